"""dlib's face descriptor network in a child process.

dlib's Python binding holds the GIL while its ResNet runs (about 0.1 s a face here), which
would stall the server's event loop and every other thread for that long. The child
process holds its own interpreter; chips (150×150 RGB) go in and 128-d vectors come out.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

_encoder: Any = None  # in the child: the loaded network


def _load(weights: str) -> None:
    global _encoder
    import dlib

    _encoder = dlib.face_recognition_model_v1(weights)


def _encode(chips: list[np.ndarray]) -> np.ndarray:
    return np.array(_encoder.compute_face_descriptor(chips), np.float32)


class DlibEncoder:
    """`encode(chips)` runs in one child process, started on first use, reused after."""

    def __init__(self, weights: Path) -> None:
        self._weights = str(weights)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def encode(self, chips: list[np.ndarray]) -> np.ndarray:
        with self._lock:  # one network: requests take turns, as they did in-process
            if self._pool is None:
                context = multiprocessing.get_context("spawn")  # no fork of a threaded process
                self._pool = ProcessPoolExecutor(
                    1, mp_context=context, initializer=_load, initargs=(self._weights,)
                )
            return self._pool.submit(_encode, chips).result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
