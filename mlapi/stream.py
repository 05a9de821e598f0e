"""`mlapi stream`: detection over webcams, video files, RTSP/HTTP streams and image folders.

A reader thread pulls frames while the engine works on earlier ones. Files and folders
are read with back-pressure (every sampled frame is processed, results are repeatable);
live sources keep only the newest frame, so a slow model drops frames instead of queueing
them without bound. Network streams reconnect with backoff when they drop.
"""

from __future__ import annotations

import json
import queue
import shlex
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mlapi import inputs
from mlapi.errors import MlapiError, StreamError
from mlapi.images import Image, decode, encode_jpeg
from mlapi.result import dumps

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


@dataclass
class Stats:
    read: int = 0
    processed: int = 0
    dropped: int = 0
    emitted: int = 0
    reconnects: int = 0
    failed: int = 0  # frames that could not be read (a bad file in a folder)
    undelivered: int = 0  # events the webhook or --exec command did not take
    started: float = field(default_factory=time.monotonic)

    def summary(self) -> str:
        elapsed = time.monotonic() - self.started
        fps = self.processed / elapsed if elapsed else 0.0
        return (
            f"{self.read} frames read, {self.processed} processed ({fps:.1f}/s), "
            f"{self.dropped} dropped, {self.emitted} events, {self.reconnects} reconnects, "
            f"{self.failed} failed, {self.undelivered} undelivered, {elapsed:.1f} s"
        )

    @property
    def ok(self) -> bool:
        return not (self.failed or self.undelivered)


# -- sources -----------------------------------------------------------------------------
def is_live(spec: str) -> bool:
    return spec.isdigit() or spec.lower().startswith(LIVE_PREFIXES)


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


def open_frames(
    spec: str,
    stop: threading.Event,
    reconnect: bool,
    stats: Stats,
    log: Callable[[str], None] = lambda text: None,
) -> Iterator[Frame]:
    path = Path(spec)
    if not is_live(spec) and (path.is_dir() or inputs.is_pattern(spec)):
        return _folder_frames(spec, log)
    if not is_live(spec) and not path.exists():
        raise StreamError(f"{spec}: no such file, folder, camera or URL")
    return _capture_frames(spec, stop, reconnect, stats)


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


# -- what happens to results -------------------------------------------------------------
def _iou(a: list[int], b: list[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 1.0


class ChangeTracker:
    """True when labels appear or disappear, or a box moved (IoU below `min_iou`)."""

    def __init__(self, min_iou: float = 0.5) -> None:
        self.min_iou = min_iou
        self._last: list[tuple[str, list[int]]] | None = None

    def changed(self, seen: list[tuple[str, list[int]]]) -> bool:
        last, self._last = self._last, seen
        if last is None:
            return True
        if sorted(label for label, _ in last) != sorted(label for label, _ in seen):
            return True
        unmatched = list(last)
        for label, box in seen:
            best = max(
                (c for c in unmatched if c[0] == label), key=lambda c: _iou(c[1], box), default=None
            )
            if best is None or _iou(best[1], box) < self.min_iou:
                return True
            unmatched.remove(best)
        self._last = last  # unchanged: keep comparing against what was last reported
        return False


def seen_objects(document: Any) -> list[tuple[str, list[int]]]:
    """(label, box) pairs from a native or mlapi-format document."""
    items = document["detections"] if isinstance(document, dict) else document
    return [(i.get("label") or i.get("type"), list(i["box"])) for i in items]


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
                    self.log(f"webhook failed after {attempts} attempts: {exc}")
                    return
            time.sleep(0.5 * 2**attempt)


# -- the loop ----------------------------------------------------------------------------
Detect = Callable[[Frame], tuple[Any, Any]]  # frame → (document, Result | None)


def local_detector(
    engine: Any, models: list[str], options: dict[str, Any], render: Callable[[Any], Any]
) -> Detect:
    from mlapi.engine import Pixels

    plan = engine.make_plan(models, options)
    engine.warm(plan.order)

    def detect(frame: Frame) -> tuple[Any, Any]:
        # Files go through the same decoding as `mlapi detect`: the same answer for a file.
        if frame.data is not None:
            pixels = Pixels(frame.data, engine.config.max_pixels)
        else:
            pixels = Pixels.of(frame.image())
        result = engine.run_here(pixels, plan)
        return render(result), result

    return detect


def remote_detector(url: str, models: list[str], options: dict[str, Any], fmt: str) -> Detect:
    from mlapi.client import Remote

    remote = Remote(url, models, options, fmt)

    def detect(frame: Frame) -> tuple[Any, Any]:
        data = frame.data if frame.data is not None else encode_jpeg(frame.image().pixels, 90)
        return json.loads(remote(data)), None

    return detect


@dataclass
class StreamConfig:
    source: str
    every: int = 1
    fps: float | None = None
    resize: int | None = None
    changes_only: bool = False
    min_iou: float = 0.5
    annotate: Path | None = None
    webhook: str | None = None
    command: str | None = None
    max_frames: int | None = None
    reconnect: bool = True
    workers: int = 2


def run_stream(
    config: StreamConfig,
    detect: Detect,
    submit: Callable[..., Future[tuple[Any, Any]]],
    emit: Callable[[str], None],
    log: Callable[[str], None],
    progress: Callable[[Stats], None] | None = None,
    stop: threading.Event | None = None,
) -> Stats:
    """Read, detect (up to `workers` frames in flight), and emit events in frame order."""
    stats = Stats()
    stop = stop or threading.Event()
    frames = open_frames(config.source, stop, config.reconnect, stats, log)
    reader = Reader(
        frames,
        Sampler(config.every, config.fps),
        is_live(config.source),
        stats,
        stop,
        config.resize,
        config.max_frames,
    )
    notifier = Notifier(config.webhook, config.command, stats, log)
    notifier.start()
    tracker = ChangeTracker(config.min_iou)
    writer: cv2.VideoWriter | None = None
    pending: list[tuple[Frame, Future[tuple[Any, Any]]]] = []

    def finish(frame: Frame, future: Future[tuple[Any, Any]]) -> None:
        nonlocal writer
        head: dict[str, Any] = {"frame": frame.index, "time": round(frame.time, 3)}
        if frame.name is not None:
            head["file"] = frame.name
        try:
            document, result = future.result()
        except MlapiError as exc:  # a bad file in a folder: reported, the others go on
            stats.failed += 1
            emit(dumps({**head, "error": exc.message}))
            return
        stats.processed += 1
        if config.annotate is not None and result is not None:
            # Frames kept per second of source time, so the video lasts as long as the source.
            rate = config.fps or ((frame.fps or 10.0) / config.every)
            writer = _write_annotated(writer, config.annotate, frame, result, rate)
        if config.changes_only and not tracker.changed(seen_objects(document)):
            return
        event = dumps({**head, "result": document})
        stats.emitted += 1
        emit(event)
        notifier.send(event)

    reader.start()
    try:
        while True:
            item = reader.queue.get()
            if item is Reader.DONE:
                break
            pending.append((item, submit(detect, item)))
            while len(pending) >= config.workers or (pending and pending[0][1].done()):
                finish(*pending.pop(0))
            if progress:
                progress(stats)
        for frame, future in pending:
            finish(frame, future)
        pending = []
        if reader.error is not None:
            raise reader.error
    except KeyboardInterrupt:
        log("interrupted")
    finally:
        stop.set()
        for _, future in pending:
            future.cancel()
        # Let the reader release its capture: a thread killed inside FFmpeg at interpreter
        # exit aborts the process ("FATAL: exception not rethrown") after Ctrl-C.
        reader.join(timeout=10)
        if writer is not None:
            writer.release()
        notifier.close()
    return stats


def _write_annotated(
    writer: cv2.VideoWriter | None, path: Path, frame: Frame, result: Any, fps: float
) -> cv2.VideoWriter:
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
