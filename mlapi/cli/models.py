"""`mlapi models`: list, pull, verify, import and remove models."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from mlapi.cli.common import device_option, fail, main, stderr_console


# -- models ------------------------------------------------------------------------------
@main.group()
def models() -> None:
    """List, fetch, verify and import models (cache: MLAPI_CACHE_DIR)."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--wide", is_flag=True, help="Every column, however wide the terminal.")
@device_option(
    "Load each pulled model on these devices (as --device of serve, detect and stream does) "
    "and say where it runs: a device column, after any fall back to the CPU."
)
def models_list(as_json: bool, wide: bool, device: str) -> None:
    """Every catalog and imported model: task, licence, size, pulled or not.

    A narrow terminal gets fewer columns (source first, then licence, size and task go),
    never a word broken across lines; --wide shows them all. With a --device other than
    the CPU (or MLAPI_DEVICE set, as for the server), each pulled model is loaded there and
    a device column says where it runs."""
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    from mlapi.result import dumps
    from mlapi.store import ModelCache

    store = ModelCache()
    rows = store.statuses()
    where = placed(store, [r.name for r in rows if r.pulled], device) if device != "cpu" else {}
    if as_json:
        click.echo(dumps([{**asdict(r), **where_of(where, r.name)} for r in rows]))
        return
    cells = {
        r.name: {
            "name": r.name,
            "task": r.task,
            "licence": r.licence,
            "size": f"{r.size / 1e6:.1f} MB",
            "source": r.source,
            "pulled": ("bundled" if r.bundled else "yes" if r.pulled else "no")
            + (" (default)" if r.default and not r.pulled else ""),
            **where_of(where, r.name),
        }
        for r in rows
    }
    order: tuple[str, ...] = ("name", "task", "licence", "size", "source", "pulled")
    if where:
        order += ("device",)

    def width(col: str, whole: bool = True) -> int:
        """The column's width: its longest cell, or (licence wraps) its longest word."""
        words = [
            c.get(col, "") if whole else max(c.get(col, "").split() or [""], key=len)
            for c in cells.values()
        ]
        return max([len(col), *map(len, words)])

    def needed(cols: list[str]) -> int:  # each column: its text, a space either side, a rule
        return sum(width(c, c != "licence") + 3 for c in cols) + 1

    console = Console()
    shown = list(order)
    if wide:
        console = Console(width=max(console.width, sum(width(c) + 3 for c in order) + 1))
    else:
        for drop in ("source", "licence", "size", "task", "pulled"):  # the least needed first
            if needed(shown) <= console.width:
                break
            shown.remove(drop)
    table = Table(title=f"models in {store.root}")
    for col in shown:
        # Words are never cut: only the licence ("MIT, Apache-2.0") wraps, between words.
        wraps = col in ("licence", "device")
        table.add_column(col, no_wrap=not wraps, min_width=width(col, not wraps))
    for r in rows:
        table.add_row(*(cells[r.name].get(col, "") for col in shown))
    console.print(table)
    left = [c for c in order if c not in shown]
    if left:
        console.print(
            f"({', '.join(left)} left out at {console.width} columns: mlapi models list --wide)",
            highlight=False,
        )


def placed(store: Any, names: list[str], device: str) -> dict[str, str]:
    """Where each of these pulled models runs on `device` (the --device setting; a
    detector's own entry counts for the models it loads): each ONNX model is loaded there,
    falling back to the CPU as the server would (the reason said); OpenCV's models run on
    the CPU."""
    from mlapi.config import RuntimeConfig
    from mlapi.engine import Runtime
    from mlapi.registry import installed

    config = RuntimeConfig(device=device)
    users: dict[str, str] = {}
    for detector, cls in sorted(installed(store).items()):
        for model in cls.models:
            users.setdefault(model, detector)
    runtime = Runtime(store, config)
    found: dict[str, str] = {}
    try:
        for name in names:
            if store.artifact(name).suffix != ".onnx":
                found[name] = "cpu (OpenCV)"
                continue
            found[name] = runtime.onnx_session(name, None, users.get(name)).describe()
    finally:
        runtime.helper.shutdown(wait=True)
    return found


def where_of(found: dict[str, str], name: str) -> dict[str, str]:
    return {"device": found.get(name, "")} if found else {}


@models.command("pull")
@click.argument("names", nargs=-1)
@click.option("--all", "pull_all", is_flag=True, help="Pull every catalog model.")
@click.option(
    "--accept-local-build",
    is_flag=True,
    help="Keep a converted model whose sha256 differs from the catalog's (made with "
    "other toolchain versions than requirements.lock).",
)
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="Say nothing about models already pulled (./run passes it); a real pull still "
    "shows its progress.",
)
def models_pull(
    names: tuple[str, ...], pull_all: bool, accept_local_build: bool, quiet: bool
) -> None:
    """Fetch NAMES (or `default`, or --all) into the cache, check and convert them.

    Converted models must come out with the catalog's sha256; a model made by an older
    recipe is made again."""
    from rich.markup import escape
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        SpinnerColumn,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from mlapi.store import ModelCache, catalog

    if pull_all:
        wanted = [e.name for e in catalog.CATALOG]
    else:
        wanted = []
        for n in names or ("default",):
            wanted += [e.name for e in catalog.CATALOG if e.default] if n == "default" else [n]
    store = ModelCache()
    console = stderr_console()
    entries = []
    for name in dict.fromkeys(wanted):
        entry = catalog.find(name)
        if entry is None:
            fail(f"no model named {name!r} in the catalog; see: mlapi models list")
        entries.append(entry)
    already = [e.name for e in entries if store.is_pulled(e.name)]
    todo = [e for e in entries if e.name not in already]
    if already and not quiet:  # one line, not one per model
        console.print(f"already pulled: {escape(', '.join(already))}", highlight=False)
    if not todo:  # no progress display at all: nothing flashes before what runs next
        sys.exit(0)
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    started = time.monotonic()
    with Progress(*columns, console=console, transient=True) as progress:
        step = progress.add_task("", total=None)
        files: dict[str, TaskID] = {}

        def phase(name: str, what: str) -> None:
            elapsed = time.monotonic() - started
            progress.update(step, description=escape(f"{name}: {what}"))
            console.print(escape(f"{name}: {what} ({elapsed:.0f} s)"), highlight=False)

        def report(filename: str, done: int, total: int | None) -> None:
            if filename not in files:  # one bar per download, real bytes
                files[filename] = progress.add_task(f"  {escape(filename)}", total=total)
            progress.update(files[filename], completed=done, total=total)

        results = store.pull_many(todo, report, phase, accept_local_build)
    failed = 0
    for name, error in results.items():
        if error is None:
            console.print(f"{escape(name)}: [green]pulled[/]", highlight=False)
        else:
            failed += 1
            console.print(f"{name}: [red]failed[/]: {escape(error.message)}", highlight=False)
    if todo:
        pulled = [name for name, error in results.items() if error is None]
        took = time.monotonic() - started
        console.print(f"{len(pulled)} of {len(todo)} model(s) pulled in {took:.0f} s")
        missing = [e.name for e in todo if e.name not in pulled]
        for name in missing:  # an empty folder is no half-done download worth keeping
            folder = store.models / name
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        if missing:  # never a quiet success with models missing: say what, and the fix
            again = f"mlapi models pull {' '.join(missing)}"
            fix = f"once the cause above is fixed: {again}"
            console.print(
                f"[red]not pulled[/]: {escape(', '.join(missing))}; {escape(fix)}",
                highlight=False,
            )
    sys.exit(1 if failed else 0)


@models.command("verify")
@click.argument("names", nargs=-1)
def models_verify(names: tuple[str, ...]) -> None:
    """Check the sha256 of every file of pulled models (or NAMES)."""
    from mlapi.store import ModelCache

    store = ModelCache()
    targets = list(names) or [r.name for r in store.statuses() if r.pulled]
    problems = [p for n in targets for p in store.verify(n)]
    for name in targets:
        ok = not any(p.startswith(f"{name}:") for p in problems)
        click.echo(f"{name}: {'ok' if ok else 'FAILED'}")
    for p in problems:
        click.echo(f"  {p}", err=True)
    sys.exit(1 if problems else 0)


@models.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Name to store the model under.")
@click.option("--task", default="custom", show_default=True, help="What the model does.")
@click.option("--licence", default="unknown", show_default=True, help="The model's licence.")
@click.option(
    "--labels",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Class names, one a line: makes an ONNX object detector usable as `-m NAME`.",
)
@click.option(
    "--layout",
    type=click.Choice(["yolo", "yolo-objectness", "yolox", "detr"]),
    help="Output layout of an object detector (default: read from its output shape).",
)
def models_import(
    file: Path, name: str, task: str, licence: str, labels: Path | None, layout: str | None
) -> None:
    """Add a local model: .onnx, TF.js model.json (+ .bin), .tflite, or Darknet .cfg.

    With --labels, an ONNX object detector (YOLOv5/v8/v11, YOLOX or DETR-style output) can be
    used as `-m NAME` by detect, stream and every server dialect."""
    from mlapi.registry import discover
    from mlapi.store import ModelCache

    if name in discover():
        fail(f"{name!r} is the name of an installed detector; choose another name")
    folder = ModelCache().import_file(file, name, task, licence, labels, layout)
    kind = "an object detector" if labels else "a model"
    click.echo(f"imported {name} into {folder} as {kind}")


@models.command("remove")
@click.argument("name")
def models_remove(name: str) -> None:
    """Delete a model from the cache."""
    from mlapi.store import ModelCache

    store = ModelCache()
    if not store.is_pulled(name) and not (store.models / name).exists():
        fail(f"model {name!r} is not in the cache")
    store.remove(name)
    click.echo(f"removed {name}")
