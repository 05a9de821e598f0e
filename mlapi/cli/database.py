"""`mlapi db`: the PostgreSQL database replicas share (see `--database`)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from mlapi.cli.common import database_option, fail, main


@main.group()
def db() -> None:
    """The PostgreSQL database that replicas share: upgrade its schema, move into it."""


@db.command("upgrade")
@database_option
def db_upgrade(database: str) -> None:
    """Bring the database's schema up to date (`mlapi serve` also does, on start)."""
    from mlapi.stores.database import Database, shown_url

    if not database:
        fail("say which database: --database postgresql://… (or MLAPI_DATABASE_URL)", 2)
    store = Database(database)
    try:
        before, after = store.upgrade()
    finally:
        store.close()
    where = shown_url(database)
    if before == after:
        click.echo(f"{where}: schema version {after}, up to date", err=True)
    else:
        click.echo(f"{where}: schema version {before} → {after}", err=True)


@db.command("copy")
@click.option("--to", "target", required=True, metavar="URL", help="The PostgreSQL to copy into.")
@click.option(
    "--from",
    "folder",
    type=click.Path(file_okay=False, exists=True, path_type=Path),
    help="The data folder to copy from (default: MLAPI_DATA_DIR's).",
)
def db_copy(target: str, folder: Path | None) -> None:
    """Copy this install's users, API keys, signing secret, known plates and faces (the
    gallery, and the faces seen with their pictures) into PostgreSQL.

    Nothing is changed in the files; ids and hashes are kept (keys and tokens go on
    working), and running it again copies nothing twice."""
    from mlapi.paths import data_dir
    from mlapi.stores.database import Database, shown_url
    from mlapi.stores.pg_copy import copy_files

    source = folder or data_dir()
    store = Database(target)
    started = time.monotonic()
    try:
        store.upgrade()
        counts = copy_files(source, store)
    finally:
        store.close()
    for what, (copied, there) in counts.items():
        click.echo(f"{what}: {copied} copied, {there} already there")
    took = time.monotonic() - started
    click.echo(f"copied {source} into {shown_url(target)} in {took:.1f} s", err=True)
