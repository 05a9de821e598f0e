"""`mlapi plates`: the known plates the `plates` detector names."""

from __future__ import annotations

import click

from mlapi.cli.common import database_option, main, stores


@main.group()
def plates() -> None:
    """Known plates: names the `plates` detector gives to the plates it reads
    (MLAPI_DATA_DIR or --database)."""


@plates.command("add")
@click.argument("name")
@click.argument("plate_or_pattern", metavar="PLATE|REGEX")
@click.option(
    "--pattern",
    "as_pattern",
    is_flag=True,
    help="Read the value as a regular expression even when it looks like a plate.",
)
@database_option
def plates_add(name: str, plate_or_pattern: str, as_pattern: bool, database: str) -> None:
    """Name a PLATE (letters and digits; spaces, dots and hyphens are dropped), or every
    plate a REGEX matches in full (on its upper-case letters and digits). A plate read
    within one edit of a known plate, or matched by a pattern, carries NAME."""
    from mlapi.stores import rules

    # Letters and digits with the separators plates are written with ("AB-123 CD",
    # "51G-100.96") are a plate; anything else is a regular expression.
    pattern = as_pattern or not rules.PLATE.fullmatch(plate_or_pattern.strip())
    if pattern:
        known = stores(database).plates.add(name, pattern=plate_or_pattern)
        click.echo(f"added pattern {known.pattern} of {known.name}", err=True)
    else:
        known = stores(database).plates.add(name, plate=plate_or_pattern)
        click.echo(f"added plate {known.plate} of {known.name}", err=True)


@plates.command("list")
@database_option
def plates_list(database: str) -> None:
    """Every known plate and pattern, one a line: NAME, `plate` or `pattern`, the value."""
    for known in stores(database).plates.known():
        kind, value = ("plate", known.plate) if known.plate else ("pattern", known.pattern)
        click.echo(f"{known.name}\t{kind}\t{value}")


@plates.command("remove")
@click.argument("name")
@database_option
def plates_remove(name: str, database: str) -> None:
    """Forget NAME's plates and patterns."""
    count = stores(database).plates.remove(name)
    click.echo(f"removed {count} plate(s) and pattern(s) of {name}", err=True)
