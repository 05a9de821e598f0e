"""`mlapi detect`: run the engine over files, print JSON, show progress to people."""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from mlapi.dialects import FORMATS
from mlapi.engine import Engine, RuntimeConfig
from mlapi.errors import MlapiError
from mlapi.result import Result, dumps


def _detect_file(
    engine: Engine, path: Path, models: list[str], options: dict[str, Any]
) -> tuple[Result | None, str | None]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot read: {exc.strerror or exc}"
    try:
        return engine.detect(data, models, options), None
    except MlapiError as exc:
        return None, exc.message


def _annotate(path: Path, result: Result, folder: Path) -> None:
    from mlapi.annotate import draw
    from mlapi.images import decode, encode_jpeg

    folder.mkdir(parents=True, exist_ok=True)
    image = decode(path.read_bytes())
    (folder / f"{path.stem}.jpg").write_bytes(encode_jpeg(draw(image.pixels, result)))


def _results(
    engine: Engine, paths: Sequence[Path], models: list[str], options: dict[str, Any], workers: int
) -> Iterator[tuple[Path, Result | None, str | None]]:
    """Results in input order while `workers` images are in flight."""
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(_detect_file, engine, p, models, options) for p in paths]
        for path, future in zip(paths, futures, strict=True):
            yield (path, *future.result())


def run_detect(
    paths: list[Path],
    models: list[str],
    options: dict[str, Any],
    fmt: str,
    annotate: Path | None,
    workers: int,
) -> int:
    console = Console(stderr=True, soft_wrap=True)
    if not paths:
        console.print("[red]error:[/] no input files matched")
        return 1
    render = FORMATS[fmt]
    engine = Engine(config=RuntimeConfig(workers=workers))
    try:
        requested, order, _ = engine.prepare(models, options)
        engine.warm(order)  # a missing model is one clear error, not one per file
    except MlapiError as exc:
        console.print(f"[red]error:[/] {exc.message}", highlight=False)
        engine.close()
        return 2 if exc.status == 400 else 1
    single = len(paths) == 1
    failed = 0
    summary = Table("file", "found", box=None)
    interactive = console.is_terminal
    try:
        with Progress(console=console, transient=True, disable=not interactive or single) as bar:
            task = bar.add_task("detecting", total=len(paths))
            for path, result, error in _results(engine, paths, requested, options, workers):
                bar.advance(task)
                if error is not None:
                    failed += 1
                    console.print(f"[red]{path}:[/] {error}", highlight=False)
                    if not single:
                        click.echo(dumps({"file": str(path), "error": error}))
                    continue
                assert result is not None
                document = render(result)
                click.echo(
                    dumps(document) if single else dumps({"file": str(path), "result": document})
                )
                sys.stdout.flush()
                if annotate:
                    _annotate(path, result, annotate)
                labels = [d.label for d in result.detections]
                summary.add_row(
                    str(path),
                    ", ".join(f"{labels.count(x)}× {x}" for x in dict.fromkeys(labels)) or "-",
                )
    finally:
        engine.close()
    if interactive:
        console.print(summary)
    return 1 if failed else 0
