"""`mlapi stream`: detection over a camera, video file, RTSP stream or folder."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mlapi.config import StreamConfig

if TYPE_CHECKING:
    from mlapi.backends import Backend
    from mlapi.cli.common import LocalStores
    from mlapi.engine import Engine
    from mlapi.images import Image
    from mlapi.result import Result
    from mlapi.sightings.recorder import Recorder
    from mlapi.stream import Stats

from mlapi.cli.common import (
    detection_options,
    fail,
    main,
    parse_models,
    parse_options,
    stderr_console,
)


# -- stream ------------------------------------------------------------------------------
def face_recorder(names: list[str], engine: Engine, local: LocalStores) -> Recorder | None:
    """With `recognize` among the detectors and the memory of faces seen on (not
    MLAPI_NO_FACE_MEMORY), the recorder of each face recognised; `recognize` then keeps
    what it needs of each face."""
    from mlapi.sightings.recorder import Recorder
    from mlapi.sightings.settings import FaceMemory

    memory = FaceMemory.from_env()
    if "recognize" not in names or memory.no_face_memory:
        return None
    engine.runtime.remember_faces = True
    return Recorder(local.sightings(), memory)


class Remembered:
    """A backend whose every result's faces are offered to the memory of faces seen, as
    route "stream", from the local user and the stream's source."""

    def __init__(self, detect: Backend, recorder: Recorder, source: str) -> None:
        import getpass

        self.detect, self.recorder, self.source = detect, recorder, source
        try:
            self.client = getpass.getuser()
        except (KeyError, OSError):  # no user name to be found (a bare container's uid)
            self.client = ""

    def warm(self) -> None:
        self.detect.warm()

    def __call__(self, image: bytes | Image) -> Result:
        result = self.detect(image)
        self.recorder.offer(result, "stream", self.client, self.source)
        return result


@main.command()
@click.argument("source")
@detection_options
@click.option(
    "--every",
    type=click.IntRange(1),
    default=StreamConfig.every,
    show_default=True,
    help="Process every Nth frame.",
)
@click.option("--fps", type=click.FloatRange(0.01, 1000), help="Process at most F frames a second.")
@click.option(
    "--resize",
    type=click.IntRange(16, 10000),
    metavar="WIDTH",
    help="Shrink wider frames to this width first.",
)
@click.option(
    "--changes-only",
    is_flag=True,
    help="Emit a frame only when labels appear/disappear or a box moves.",
)
@click.option(
    "--move-threshold",
    type=click.FloatRange(0, 1),
    default=StreamConfig.min_iou,
    show_default=True,
    help="With --changes-only: a box moved when its IoU with before is below this.",
)
@click.option(
    "--annotate",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the processed frames with boxes drawn to this .mp4 or .avi.",
)
@click.option("--webhook", metavar="URL", help="POST each emitted event (JSON) here.")
@click.option("--exec", "command", metavar="CMD", help="Run CMD with each event on stdin.")
@click.option("--max-frames", type=click.IntRange(1), help="Stop after this many processed frames.")
@click.option("--no-reconnect", is_flag=True, help="Stop when a network stream drops.")
def stream(
    source: str,
    models: tuple[str, ...],
    options: tuple[str, ...],
    fmt: str,
    every: int,
    fps: float | None,
    resize: int | None,
    changes_only: bool,
    move_threshold: float,
    annotate: Path | None,
    webhook: str | None,
    command: str | None,
    server: str | None,
    max_frames: int | None,
    no_reconnect: bool,
    workers: int,
    device: str,
) -> None:
    """Detect over SOURCE: a webcam index, a video file, an rtsp:// or http(s):// stream
    (MJPEG too), or an image folder/glob. One JSON line per processed frame on stdout:
    {"frame", "time", "result"}; a summary on stderr at the end (or on Ctrl-C)."""
    from concurrent.futures import ThreadPoolExecutor

    from mlapi.backends import backend
    from mlapi.cli.common import LocalStores
    from mlapi.config import RuntimeConfig
    from mlapi.engine import Engine, map_large_buffers
    from mlapi.errors import MlapiError
    from mlapi.render import FORMATS
    from mlapi.stream import run_stream
    from mlapi.stream.sources import kind, source_name

    if server and annotate:
        raise click.UsageError("--annotate works only locally, not with --server")
    console = stderr_console()
    if kind(source) == "missing":  # said before any model loads
        fail(f"{source}: no such file, folder, camera or URL", 1)
    names, opts = parse_models(models) or ["objects"], parse_options(options)
    config = StreamConfig(
        source,
        every,
        fps,
        resize,
        changes_only,
        move_threshold,
        annotate,
        webhook,
        command,
        max_frames,
        not no_reconnect,
        workers,
    )
    map_large_buffers()
    local = LocalStores()
    with (
        Engine(
            config=RuntimeConfig(workers=workers, device=device),
            gallery=local.faces,
            plates=local.plates,
        ) as engine,
        ThreadPoolExecutor(workers) as pool,
    ):
        try:
            # A server remembers the faces it recognises: it is told the source's name.
            named = source_name(source) if "recognize" in names else ""
            detect = backend(server, engine, names, opts, named)
            detect.warm()
        except MlapiError as exc:
            fail(exc.message, 2 if exc.status == 400 else 1)
        # The faces recognised here are remembered as a server's are (a server recognising
        # for --server remembers them itself).
        recorder = None if server else face_recorder(names, engine, local)
        if recorder is not None:
            detect = Remembered(detect, recorder, source_name(source))

        def emit(line: str) -> None:
            click.echo(line)
            sys.stdout.flush()

        last = [0.0]

        def progress(stats: Stats) -> None:
            """One status line that fits the terminal and is rewritten in place."""
            if console.is_terminal and time.monotonic() - last[0] > 1:
                last[0] = time.monotonic()
                line = stats.summary(console.width - 1)
                sys.stderr.write("\r" + line.ljust(console.width - 1) + "\r")
                sys.stderr.flush()

        def log(text: str) -> None:
            if console.is_terminal:  # clear the status line (and a ^C) first
                sys.stderr.write("\r" + " " * (console.width - 1) + "\r")
            console.print(text, markup=False, highlight=False)

        try:
            stats = run_stream(config, detect, FORMATS[fmt], pool.submit, emit, log, progress)
        finally:
            if recorder is not None:
                recorder.close()  # what is queued is written before the command ends
    if console.is_terminal:
        sys.stderr.write("\r" + " " * (console.width - 1) + "\r")
    width = console.width - 1 if console.is_terminal else None  # one line, never wrapped
    console.print(stats.summary(width), highlight=False)
    if recorder is not None and recorder.counts["kept"]:
        console.print(
            f"{recorder.counts['kept']} face sighting(s) kept (mlapi faces unknown list)",
            highlight=False,
        )
    sys.exit(0 if stats.ok else 1)  # unreadable files and undelivered events fail the run
