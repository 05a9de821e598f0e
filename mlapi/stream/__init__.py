"""`mlapi stream`: detection over webcams, video files, RTSP/HTTP streams and image folders.

A reader thread pulls frames while the engine works on earlier ones. Files and folders
are read with back-pressure (every sampled frame is processed, results are repeatable);
live sources keep only the newest frame, so a slow model drops frames instead of queueing
them without bound. Network streams reconnect with backoff when they drop.

Sources (sources.py) → the loop (pipeline.py, detecting through mlapi.backends) → stdout
and the sinks (sinks.py: webhook, command, annotated video); changes.py says what changed.
"""

from mlapi.config import StreamConfig
from mlapi.stream.changes import ChangeTracker
from mlapi.stream.pipeline import run_stream
from mlapi.stream.sources import Frame, Sampler
from mlapi.stream.stats import Stats

__all__ = ["ChangeTracker", "Frame", "Sampler", "Stats", "StreamConfig", "run_stream"]
