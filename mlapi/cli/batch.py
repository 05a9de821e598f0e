"""`mlapi detect`: run the engine over files, print JSON, show progress to people."""

from __future__ import annotations

import functools
import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress
from rich.table import Table

from mlapi.backends import Backend, backend
from mlapi.cli.common import LocalStores
from mlapi.config import RuntimeConfig
from mlapi.engine import Engine, map_large_buffers
from mlapi.errors import MlapiError
from mlapi.render import FORMATS
from mlapi.result import Result, dumps

STDIN = Path("-")  # `mlapi detect -`: the image on standard input


@functools.cache
def _stdin() -> bytes:
    return sys.stdin.buffer.read()  # read once: --annotate needs it again


def read_input(path: Path) -> bytes:
    return _stdin() if path == STDIN else path.read_bytes()


def _detect_file(backend: Backend, path: Path) -> tuple[Result | None, str | None]:
    try:
        data = read_input(path)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    try:
        return backend(data), None
    except MlapiError as exc:
        return None, exc.message


def found(result: Result) -> str:
    """What a summary row says: each label's count, with the names recognised among them,
    as in '3× face (Kumail, 2× unknown), 1× person'."""
    from mlapi.attributes import IDENTITY, NAME, UNKNOWN

    parts = []
    labels = [d.label for d in result.detections]
    for label in dict.fromkeys(labels):
        names = [
            str(d.attributes.get(IDENTITY) or d.attributes.get(NAME))
            for d in result.detections
            if d.label == label and (IDENTITY in d.attributes or NAME in d.attributes)
        ]
        named = ", ".join(
            n if names.count(n) == 1 else f"{names.count(n)}× {n}"
            for n in sorted(dict.fromkeys(names), key=lambda n: n == UNKNOWN)  # known first
        )
        parts.append(f"{labels.count(label)}× {label}" + (f" ({named})" if named else ""))
    return ", ".join(parts)


def _annotate(path: Path, result: Result, folder: Path, written: set[Path]) -> None:
    """Write a copy with boxes as FOLDER/NAME.jpg (a JPEG) or FOLDER/NAME.png (any other
    format, kept lossless); inputs of one run that share a name get NAME-2…, NAME-3…
    instead of overwriting each other."""
    import cv2

    from mlapi.annotate import draw
    from mlapi.images import decode, encode_jpeg

    image = decode(read_input(path))
    suffix = ".jpg" if image.format == "jpeg" else ".png"
    folder.mkdir(parents=True, exist_ok=True)
    stem = "stdin" if path == STDIN else path.stem
    target, n = folder / f"{stem}{suffix}", 1
    while target in written:
        n += 1
        target = folder / f"{stem}-{n}{suffix}"
    written.add(target)
    drawn = draw(image.pixels, result)
    if suffix == ".jpg":
        target.write_bytes(encode_jpeg(drawn))
    else:
        _, png = cv2.imencode(".png", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        target.write_bytes(png.tobytes())


def _results(
    backend: Backend, paths: Sequence[Path], workers: int
) -> Iterator[tuple[Path, Result | None, str | None]]:
    """Results in input order while `workers` images are in flight."""
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(_detect_file, backend, p) for p in paths]
        for path, future in zip(paths, futures, strict=True):
            yield (path, *future.result())


def run_detect(
    paths: list[Path],
    models: list[str],
    options: dict[str, Any],
    fmt: str,
    annotate: Path | None,
    workers: int,
    server: str | None = None,
    device: str = RuntimeConfig.device,
) -> int:
    console = Console(stderr=True, soft_wrap=True)
    if not paths:
        console.print("[red]error:[/] no input files matched")
        return 1
    if not server:
        map_large_buffers()
    local, runtime = LocalStores(), RuntimeConfig(workers=workers, device=device)
    engine = None if server else Engine(config=runtime, gallery=local.faces, plates=local.plates)
    render = FORMATS[fmt]
    try:
        chosen = backend(server, engine, models, options)
        chosen.warm()  # a missing model is one clear error, not one per file
    except MlapiError as exc:
        console.print(f"[red]error:[/] {escape(exc.message)}", highlight=False)
        if engine is not None:
            engine.close()
        return 2 if exc.status == 400 else 1
    single = len(paths) == 1
    failed = 0
    summary = Table(box=None)
    summary.add_column("file", overflow="fold")  # a path is never cut, only folded
    summary.add_column("found", overflow="fold")
    interactive = console.is_terminal
    annotated: set[Path] = set()
    try:
        with Progress(console=console, transient=True, disable=not interactive or single) as bar:
            task = bar.add_task("detecting", total=len(paths))
            for path, result, error in _results(chosen, paths, workers):
                bar.advance(task)
                if error is not None or result is None:
                    failed += 1
                    error = error or "no result"
                    console.print(f"[red]{escape(str(path))}:[/] {escape(error)}", highlight=False)
                    summary.add_row(escape(str(path)), "[red]failed[/] (said above)")
                    if not single:
                        click.echo(dumps({"file": str(path), "error": error}))
                    continue
                document = render(result)
                click.echo(dumps(document if single else {"file": str(path), "result": document}))
                sys.stdout.flush()
                if annotate:
                    _annotate(path, result, annotate, annotated)
                summary.add_row(escape(str(path)), escape(found(result)) or "-")
    finally:
        if engine is not None:
            engine.close()
    if interactive and not (single and failed):  # one file's error needs no table again
        console.print(summary)
    if failed and not single:  # the errors may have scrolled away: say how many
        console.print(f"[red]{failed} of {len(paths)} image(s) failed[/]", highlight=False)
    return 1 if failed else 0
