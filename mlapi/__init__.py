"""mlapi: a self-hosted computer-vision API gateway."""

import os

__version__ = "0.1.0"

# onnxruntime's Linux wheels record a device id and events under ~/.cache/Microsoft when
# imported; this (read by its native library at import) turns that off. Nothing stored
# unless asked: a user who wants it sets ORT_DISABLE_TELEMETRY=0.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
# OpenCV logs its own attempts (two `[ WARN ]` lines for a camera that is not there) before
# mlapi says what failed in one line; OPENCV_LOG_LEVEL=WARNING brings them back.
os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
