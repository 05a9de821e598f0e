"""The stream's loop: read, detect up to `workers` frames at once, report in order."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import cv2

from mlapi.backends import Backend
from mlapi.config import StreamConfig
from mlapi.errors import MlapiError
from mlapi.render import Renderer
from mlapi.result import Result, dumps
from mlapi.stream.changes import ChangeTracker, seen_objects
from mlapi.stream.sinks import Notifier, write_annotated
from mlapi.stream.sources import Frame, Reader, Sampler, is_live, open_frames
from mlapi.stream.stats import Stats


def run_stream(
    config: StreamConfig,
    detect: Backend,
    render: Renderer,
    submit: Callable[..., Future[Result]],
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
    pending: list[tuple[Frame, Future[Result]]] = []

    def finish(frame: Frame, future: Future[Result]) -> None:
        nonlocal writer
        head: dict[str, Any] = {"frame": frame.index, "time": round(frame.time, 3)}
        if frame.name is not None:
            head["file"] = frame.name
        try:
            result = future.result()
        except MlapiError as exc:  # a bad file in a folder: reported, the others go on
            stats.failed += 1
            emit(dumps({**head, "error": exc.message}))
            log(f"{frame.name or f'frame {frame.index}'}: {exc.message}")  # for people too
            return
        stats.processed += 1
        if config.annotate is not None:
            # Frames kept per second of source time, so the video lasts as long as the source.
            rate = config.fps or ((frame.fps or 10.0) / config.every)
            writer = write_annotated(writer, config.annotate, frame, result, rate)
        if config.changes_only and not tracker.changed(seen_objects(result)):
            return
        event = dumps({**head, "result": render(result)})
        stats.emitted += 1
        emit(event)
        notifier.send(event)

    reader.start()
    try:
        while True:
            item = reader.queue.get()
            if item is Reader.DONE:
                break
            image = item.data if item.data is not None else item.image()
            pending.append((item, submit(detect, image)))
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
