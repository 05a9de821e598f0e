"""Where a stream's results go besides stdout: a webhook, a command, an annotated video."""

from __future__ import annotations

import queue
import shlex
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import cv2

from mlapi.errors import StreamError
from mlapi.result import Result
from mlapi.stream.sources import Frame
from mlapi.stream.stats import Stats


class Notifier(threading.Thread):
    """Delivers events to a webhook and/or a command without ever blocking capture."""

    def __init__(
        self, webhook: str | None, command: str | None, stats: Stats, log: Callable[[str], None]
    ) -> None:
        super().__init__(daemon=True, name="mlapi-stream-notifier")
        self.webhook, self.log = webhook, log
        self.command = shlex.split(command) if command else None
        self.queue: queue.Queue[str | None] = queue.Queue(maxsize=100)
        self.stats = stats

    def send(self, event: str) -> None:
        try:
            self.queue.put_nowait(event)
        except queue.Full:
            self.stats.undelivered += 1  # the receiver is too slow: drop, never stall capture

    def close(self) -> None:
        self.queue.put(None)
        self.join(30)

    def run(self) -> None:
        while (event := self.queue.get()) is not None:
            if self.webhook:
                self._post(event)
            if self.command:
                try:
                    subprocess.run(
                        self.command,
                        input=event.encode(),
                        timeout=30,
                        check=False,
                        stdout=subprocess.DEVNULL,
                    )
                except (OSError, subprocess.TimeoutExpired) as exc:
                    self.stats.undelivered += 1
                    self.log(f"--exec failed: {exc}")

    def _post(self, event: str, attempts: int = 3) -> None:
        for attempt in range(attempts):
            request = urllib.request.Request(
                self.webhook or "",
                data=event.encode(),
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "mlapi-stream"},
            )
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status < 300:
                        return
            except OSError as exc:
                if attempt == attempts - 1:
                    self.stats.undelivered += 1
                    where = (self.webhook or "").split("?", 1)[0]  # a query may hold a secret
                    self.log(f"webhook {where} failed after {attempts} attempts: {exc}")
                    return
            time.sleep(0.5 * 2**attempt)


def write_annotated(
    writer: cv2.VideoWriter | None, path: Path, frame: Frame, result: Result, fps: float
) -> cv2.VideoWriter:
    """Append the frame with its boxes drawn to the video at `path` (opened on first use)."""
    from mlapi.annotate import draw

    image = frame.image()
    rgb = (
        image.pixels if image.scale == 1 else cv2.resize(image.pixels, (image.width, image.height))
    )
    bgr = cv2.cvtColor(draw(rgb, result), cv2.COLOR_RGB2BGR)
    if writer is None:
        codec = "MJPG" if path.suffix.lower() == ".avi" else "mp4v"
        fourcc = cv2.VideoWriter.fourcc(*codec)
        writer = cv2.VideoWriter(str(path), fourcc, fps, (bgr.shape[1], bgr.shape[0]))
        if not writer.isOpened():
            raise StreamError(f"cannot write video {path}")
    writer.write(bgr)
    return writer
