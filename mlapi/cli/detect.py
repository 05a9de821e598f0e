"""`mlapi detect`: detection on files, folders, globs or stdin."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlapi.cli.common import (
    detection_options,
    escape,
    main,
    parse_models,
    parse_options,
    stderr_console,
)


# -- detect ------------------------------------------------------------------------------
@main.command()
@click.argument("inputs", nargs=-1, required=True)
@detection_options
@click.option(
    "--annotate",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write copies of the images with boxes drawn into this directory.",
)
def detect(
    inputs: tuple[str, ...],
    models: tuple[str, ...],
    options: tuple[str, ...],
    fmt: str,
    annotate: Path | None,
    workers: int,
    server: str | None,
    device: str,
) -> None:
    """Detect objects and faces in FILE, DIR or GLOB arguments; JSON on stdout.

    One image prints one JSON document (what the server answers); several print JSON
    lines of {"file", "result"} or {"file", "error"}. Exit code 1 if any image failed.
    """
    from mlapi import inputs as files
    from mlapi.cli.batch import run_detect

    skipped: list[Path] = []
    unmatched: list[str] = []
    paths = files.expand(inputs, skipped, unmatched)
    for pattern in unmatched:  # named as typed, brackets and all
        what = "error" if not paths else "warning"
        stderr_console().print(
            f"{what}: no file matched {pattern!r}", highlight=False, markup=False
        )
    if not paths and unmatched:
        raise SystemExit(1)
    for path in skipped:  # a folder's other files: said, not silently passed over
        kind = "a folder" if path.is_dir() else "not an image file type"
        stderr_console().print(f"skipped {escape(str(path))}: {kind}", highlight=False)
    code = run_detect(
        paths,
        parse_models(models),
        parse_options(options),
        fmt,
        annotate,
        workers,
        server,
        device,
    )
    sys.exit(code)
