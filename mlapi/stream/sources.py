"""Where frames come from: cameras, network streams, video files and image folders (one
opener per kind of source), sampled and read ahead on a thread of their own."""

from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mlapi import inputs
from mlapi.errors import StreamError
from mlapi.images import Image, decode
from mlapi.stream.stats import Stats

LIVE_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://")


@dataclass
class Frame:
    """A video frame (`rgb`) or an image file (`data`, read like `mlapi detect` reads it)."""

    index: int  # position in the source, counting every frame read
    time: float  # seconds: the stream's own timestamp, else since the start
    rgb: np.ndarray | None = None
    data: bytes | None = None
    name: str | None = None  # the file's path, for folders and globs
    size: tuple[int, int] | None = None  # the frame's original (width, height) if resized
    fps: float | None = None  # the source's frame rate, for annotated video

    def image(self) -> Image:
        """The frame as the engine sees it; a resized frame keeps its original size, so
        boxes come back in original pixels."""
        if self.data is not None:
            return decode(self.data)
        assert self.rgb is not None
        width, height = self.size or (self.rgb.shape[1], self.rgb.shape[0])
        return Image(np.ascontiguousarray(self.rgb), width, height, "raw")


def is_live(spec: str) -> bool:
    """A camera or a network stream: keep the newest frame, reconnect when it drops."""
    return kind(spec) in ("camera", "stream")


def _folder_frames(spec: str, log: Callable[[str], None]) -> Iterator[Frame]:
    skipped: list[Path] = []
    files = inputs.expand([spec], skipped)
    for path in skipped:  # said, as `detect` says it
        log(f"skipped {path}: {'a folder' if path.is_dir() else 'not an image file type'}")
    if not files:
        raise StreamError(f"no images in {spec}")
    for index, file in enumerate(files):
        try:
            data = file.read_bytes()
        except OSError:
            continue  # an unreadable file in a folder is skipped (and reported as an error)
        yield Frame(index, float(index), data=data, name=str(file))


def _capture_frames(
    spec: str, stop: threading.Event, reconnect: bool, stats: Stats
) -> Iterator[Frame]:
    live = is_live(spec)
    target: int | str = int(spec) if spec.isdigit() else spec
    index, backoff, started = 0, 0.5, time.monotonic()
    opened_once = False
    while not stop.is_set():
        capture = cv2.VideoCapture(target)
        if not capture.isOpened():
            capture.release()
            # A camera that never opened is not there: say so instead of retrying forever.
            # Network streams and cameras that dropped are retried.
            if not (live and reconnect) or (isinstance(target, int) and not opened_once):
                raise StreamError(f"cannot open {spec}")
        else:
            opened_once = True
            backoff = 0.5
            while not stop.is_set():
                ok, bgr = capture.read()
                if not ok:
                    break
                if live:
                    stamp = time.monotonic() - started
                else:  # the container's timestamp, else the frame rate's
                    stamp = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
                    if stamp <= 0 and index:
                        stamp = index / (capture.get(cv2.CAP_PROP_FPS) or 25.0)
                fps = capture.get(cv2.CAP_PROP_FPS) or None
                yield Frame(index, stamp, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), fps=fps)
                index += 1
            capture.release()
        if not (live and reconnect) or stop.is_set():
            return
        stats.reconnects += 1
        stop.wait(backoff)  # the stream dropped: try again, backing off up to 10 s
        backoff = min(backoff * 2, 10.0)


def kind(spec: str) -> str:
    """camera, stream (a network URL), folder (a folder or glob), video, or missing."""
    if spec.isdigit():
        return "camera"
    if spec.lower().startswith(LIVE_PREFIXES):
        return "stream"
    path = Path(spec)
    if path.is_dir() or inputs.is_pattern(spec):
        return "folder"
    return "video" if path.exists() else "missing"


def source_name(spec: str) -> str:
    """The source as the memory of faces seen names it: a camera's index, the file or
    folder as given, a network stream's URL without its user and password, in its netloc
    or its query (`?user=admin&password=…`, as some cameras take them)."""
    if kind(spec) != "stream":
        return spec
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    try:
        parts = urlsplit(spec)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a malformed URL: its scheme only, never what may be a password
        return spec.split(":", 1)[0] + "://"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if not SECRET_PARAMETER.search(key)
    ]
    return urlunsplit((parts.scheme, host + port, parts.path, urlencode(query), ""))


# Query parameters that may hold a credential, dropped from a stream's name.
SECRET_PARAMETER = re.compile(r"user|login|pass|pwd|token|auth|key|secret|sig|cred", re.I)


def _missing(spec: str, *_: Any) -> Iterator[Frame]:
    raise StreamError(f"{spec}: no such file, folder, camera or URL")


Opener = Callable[[str, threading.Event, bool, Stats, Callable[[str], None]], Iterator[Frame]]
OPENERS: dict[str, Opener] = {
    "camera": lambda spec, stop, reconnect, stats, log: _capture_frames(
        spec, stop, reconnect, stats
    ),
    "stream": lambda spec, stop, reconnect, stats, log: _capture_frames(
        spec, stop, reconnect, stats
    ),
    "video": lambda spec, stop, reconnect, stats, log: _capture_frames(
        spec, stop, reconnect, stats
    ),
    "folder": lambda spec, stop, reconnect, stats, log: _folder_frames(spec, log),
    "missing": _missing,
}


def open_frames(
    spec: str,
    stop: threading.Event,
    reconnect: bool,
    stats: Stats,
    log: Callable[[str], None] = lambda text: None,
) -> Iterator[Frame]:
    """The frames of a camera index, a network stream, a video file, or an image folder."""
    return OPENERS[kind(spec)](spec, stop, reconnect, stats, log)


class Sampler:
    """Keeps every Nth frame, or at most `fps` frames per second of stream time."""

    def __init__(self, every: int = 1, fps: float | None = None) -> None:
        self.every, self.fps = every, fps
        self._next_time = float("-inf")

    def keep(self, frame: Frame) -> bool:
        if self.fps:
            if frame.time + 1e-6 < self._next_time:
                return False
            self._next_time = max(self._next_time, frame.time) + 1 / self.fps
            return True
        return frame.index % self.every == 0


class Reader(threading.Thread):
    """Reads and samples frames in the background.

    Live sources: a one-slot mailbox, newer frames replace unprocessed ones (counted as
    dropped). Files: a small blocking queue, so nothing is skipped.
    """

    DONE = object()

    def __init__(
        self,
        frames: Iterator[Frame],
        sampler: Sampler,
        live: bool,
        stats: Stats,
        stop: threading.Event,
        resize: int | None,
        max_frames: int | None,
    ) -> None:
        super().__init__(daemon=True, name="mlapi-stream-reader")
        self.frames, self.sampler, self.live, self.stats = frames, sampler, live, stats
        self.stop, self.resize, self.max_frames = stop, resize, max_frames
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=1 if live else 4)
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            kept = 0
            for frame in self.frames:
                self.stats.read += 1
                if not self.sampler.keep(frame):
                    continue
                if self.resize and frame.rgb is not None and frame.rgb.shape[1] > self.resize:
                    h, w = frame.rgb.shape[:2]
                    size = (self.resize, max(1, round(h * self.resize / w)))
                    frame.rgb = cv2.resize(frame.rgb, size, interpolation=cv2.INTER_AREA)
                    frame.size = (w, h)
                self._put(frame)
                kept += 1
                if self.stop.is_set() or (self.max_frames and kept >= self.max_frames):
                    break
        except BaseException as exc:  # reported by the consumer
            self.error = exc
        finally:
            self._put(self.DONE, final=True)

    def _put(self, item: Any, final: bool = False) -> None:
        if self.live and not final:  # the newest frame wins the one-slot mailbox
            while True:
                try:
                    self.queue.put_nowait(item)
                    return
                except queue.Full:
                    self._drop_one()
        # Files, and the end marker: wait for room while the consumer is still there.
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _drop_one(self) -> None:
        try:
            old = self.queue.get_nowait()
            if old is not self.DONE:
                self.stats.dropped += 1
        except queue.Empty:
            pass
