"""Who may call the server: `adduser`, `users`, `keys`, and `login` for the CLI."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from mlapi.cli.common import database_option, fail, main, stores

if TYPE_CHECKING:
    from mlapi.stores import Accounts


# -- users and keys ----------------------------------------------------------------------
def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():  # getpass would warn and echo, then click would abort
        fail("no terminal to ask for a password: pipe it in with --password-stdin", 2)
    from mlapi.errors import UserError
    from mlapi.stores import rules

    click.echo(f"A password needs at least {rules.MIN_PASSWORD} characters.", err=True)
    for _ in range(TRIES):  # a typo costs a retry, not the whole command
        first = click.prompt("password", hide_input=True, err=True, default="", show_default=False)
        try:
            rules.password(first)
        except UserError as exc:
            click.echo(f"{exc.message}; try again", err=True)
            continue
        again = click.prompt(
            "password again", hide_input=True, err=True, default="", show_default=False
        )
        if again == first:
            return first
        click.echo("the two passwords differ; try again", err=True)
    fail(f"no password set after {TRIES} tries", 1)


TRIES = 3


def _users(database: str) -> Accounts:
    return stores(database).accounts


@main.command()
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@database_option
def adduser(name: str, password_stdin: bool, database: str) -> None:
    """Create a user who may call the server (data: MLAPI_DATA_DIR or --database)."""

    _users(database).add(name, _read_password(password_stdin))
    click.echo(f"added user {name}", err=True)


@main.group()
def users() -> None:
    """List and remove users, change passwords."""


@users.command("list")
@database_option
def users_list(database: str) -> None:
    """Every user, one name a line."""
    for name in _users(database).names():
        click.echo(name)


@users.command("remove")
@click.argument("name")
@database_option
def users_remove(name: str, database: str) -> None:
    """Delete a user and their API keys."""

    _users(database).remove(name)
    click.echo(f"removed user {name}", err=True)


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@database_option
def users_passwd(name: str, password_stdin: bool, database: str) -> None:
    """Change a user's password."""

    _users(database).set_password(name, _read_password(password_stdin))
    click.echo(f"password changed for {name}", err=True)


@main.group()
def keys() -> None:
    """Long-lived API keys for cameras and scripts (Bearer or X-API-Key)."""


@keys.command("create")
@click.argument("user")
@click.option("--name", default="key", show_default=True, help="A label to recognise it by.")
@database_option
def keys_create(user: str, name: str, database: str) -> None:
    """Create a key for USER and print it (shown once; only a hash is stored)."""
    from mlapi import text

    click.echo(_users(database).create_key(user, text.name(name, "the key's name")))


@keys.command("list")
@database_option
def keys_list(database: str) -> None:
    """Every API key: its id (for `keys revoke`), user, label, when it was made and last
    used (the server records use within 30 s)."""
    import datetime

    def when(stamp: float) -> str:
        return datetime.datetime.fromtimestamp(stamp).isoformat(sep=" ", timespec="minutes")

    rows = [("ID", "USER", "NAME", "CREATED", "LAST USED")]
    for k in _users(database).api_keys():
        used = when(k.last_used) if k.last_used is not None else "never"
        rows.append((k.id, k.user, k.name, when(k.created), used))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        click.echo(
            "  ".join([*(cell.ljust(w) for cell, w in zip(row[:4], widths, strict=True)), row[4]])
        )


@keys.command("revoke")
@click.argument("key_id")
@database_option
def keys_revoke(key_id: str, database: str) -> None:
    """Revoke the key with KEY_ID (the id column of `mlapi keys list`)."""

    _users(database).revoke_key(key_id)
    click.echo(f"revoked {key_id}", err=True)


@main.command()
@click.argument("url")
@click.option("--username", "-u", prompt=True, help="User name on the server.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def login(url: str, username: str, password_stdin: bool) -> None:
    """Log in to a server; later `mlapi detect --server URL` uses the saved token."""
    from mlapi import client

    password = (
        sys.stdin.readline().rstrip("\r\n")
        if password_stdin
        else click.prompt("password", hide_input=True, err=True)
    )
    client.login(url, username, password)
    click.echo(f"logged in to {url}", err=True)
