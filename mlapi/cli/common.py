"""What every command shares: the `main` group, messages to people, option parsing.

People read stderr (progress, tables, errors); programs read stdout (JSON). Heavy imports
live inside commands so `--help` is instant.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from mlapi import __version__
from mlapi.config import RuntimeConfig
from mlapi.errors import MlapiError
from mlapi.render import FORMAT_NAMES

if TYPE_CHECKING:
    from rich.console import Console

    from mlapi.stores import Faces, Plates, Sightings, Stores


def stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def escape(text: str) -> str:
    """Text printed through rich as it is: `holiday[beach].jpg`, `pip install 'x[import]'`."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def fail(message: str, code: int = 1) -> NoReturn:
    # Messages carry file names and commands with brackets: print them as they are.
    stderr_console().print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    sys.exit(code)


def parse_models(values: tuple[str, ...]) -> list[str]:
    return [m.strip() for v in values for m in v.split(",") if m.strip()]


def parse_options(values: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """`-o objects.confidence=0.5` → {"objects": {"confidence": "0.5"}}."""
    options: dict[str, dict[str, str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        model, dot, name = key.partition(".")
        if not sep or not dot or not model or not name:
            raise click.BadParameter(f"{item!r} is not MODEL.KEY=VALUE", param_hint="-o")
        options.setdefault(model.strip(), {})[name.strip()] = value.strip()
    return options


def parse_networks(text: str) -> tuple[Any, ...]:
    """`10.0.0.5/32,192.168.1.0/24` → networks; a clear usage error for a bad one."""
    import ipaddress

    networks = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise click.BadParameter(f"{item!r} is not a network (e.g. 192.168.1.0/24)") from exc
    return tuple(networks)


def parse_device_setting(text: str) -> str:
    """`--device`: `auto,faces=cpu` in its canonical spelling; a clear usage error else."""
    from mlapi.devices import parse_devices

    try:
        return parse_devices(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def device_option(help: str) -> Callable[[Callable[..., Any]], Any]:
    """`--device` (MLAPI_DEVICE) of the commands other than serve, which reads it as a
    setting; `help` says what the command does with it."""
    return click.option(
        "--device",
        default=RuntimeConfig.device,
        show_default=True,
        envvar="MLAPI_DEVICE",
        metavar="DEVICES",
        callback=lambda ctx, param, value: parse_device_setting(value or "cpu"),
        help=f"{help} [env: MLAPI_DEVICE]",
    )


def parse_provider_options(text: str) -> str:
    """`--openvino-options`, `--cuda-options`: KEY=VALUE pairs, comma-separated."""
    from mlapi.devices import provider_options

    try:
        return ",".join(f"{k}={v}" for k, v in provider_options(text).items())
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def parse_public_url(text: str) -> str:
    """`https://vision.lan[:port][/prefix]` → that URL without a trailing slash; a clear
    usage error for anything else."""
    from urllib.parse import urlsplit

    url = text.strip().rstrip("/")
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not a URL (e.g. https://vision.lan)") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise click.BadParameter(f"{text!r} is not an http(s) URL (e.g. https://vision.lan)")
    return url


def parse_dialects(text: str) -> tuple[str, ...]:
    """`deepstack,doods` → those names, each an installed dialect that a network may be
    opened to; a clear usage error otherwise."""
    from mlapi.web.dialect import installed

    names = tuple(filter(None, (t.strip() for t in text.split(","))))
    openable = sorted(name for name, d in installed().items() if d.keyless)
    unknown = sorted(set(names) - set(openable))
    if unknown:
        raise click.BadParameter(
            f"unknown dialect {', '.join(unknown)} (known: {', '.join(openable)})"
        )
    return names


def database_option(command: Callable[..., Any]) -> Callable[..., Any]:
    """--database: where users, keys and faces live (replicas share one PostgreSQL)."""
    return click.option(
        "--database",
        default="",
        metavar="URL",
        envvar="MLAPI_DATABASE_URL",
        help="PostgreSQL that replicas share (postgresql://USER:PASSWORD@HOST/DB); default: "
        "TinyDB files in the data folder [env: MLAPI_DATABASE_URL].",
    )(command)


class LocalStores:
    """The stores `detect` and `stream` recognise faces and name plates from: those that
    MLAPI_DATABASE_URL names, else the data folder's. Given to the engine to open on first
    use (`gallery=local.faces, plates=local.plates`), so detecting objects touches no
    stored state; opened once for both."""

    def __init__(self) -> None:
        self._opened: Stores | None = None
        self._lock = threading.Lock()

    def _stores(self) -> Stores:
        with self._lock:
            if self._opened is None:
                from mlapi.stores import open_stores

                self._opened = open_stores()
            return self._opened

    def faces(self) -> Faces:
        return self._stores().faces

    def plates(self) -> Plates:
        return self._stores().plates

    def sightings(self) -> Sightings:
        return self._stores().sightings


def stores(database: str) -> Stores:
    from mlapi.stores import open_stores

    return open_stores(database=database)


def detection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The options `detect` and `stream` share: what to run, how to print, where to run."""
    options = [
        click.option(
            "-m",
            "--models",
            "models",
            multiple=True,
            metavar="NAMES",
            help="Detectors to run, comma-separated (default: objects).",
        ),
        click.option(
            "-o",
            "--option",
            "options",
            multiple=True,
            metavar="MODEL.KEY=VALUE",
            help="A detector option, e.g. -o objects.confidence=0.5 (repeatable).",
        ),
        click.option(
            "--format",
            "fmt",
            type=click.Choice(FORMAT_NAMES),
            default="native",
            show_default=True,
            help="Output shape: mlapi's native JSON or the seed's array.",
        ),
        click.option(
            "--server",
            metavar="URL",
            envvar="MLAPI_SERVER",
            help="Detect on this mlapi server instead (after `mlapi login`) [env: MLAPI_SERVER].",
        ),
        device_option(
            "Where the models run: cpu, auto, openvino[:CPU|GPU|NPU|AUTO] or cuda[:N], then "
            "DETECTOR=DEVICE for one detector, comma-separated (docs/accelerators.md)."
        ),
        click.option(
            "--workers",
            type=click.IntRange(1, 64),
            default=RuntimeConfig.workers,
            show_default=True,
            envvar="MLAPI_WORKERS",
            help="Images or frames in flight at once [env: MLAPI_WORKERS].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


class MlapiGroup(click.Group):
    """Any MlapiError a command lets through becomes `error: MESSAGE` and exit 1, so no
    command needs its own try/except to say what went wrong."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MlapiError as exc:
            fail(exc.message)


@click.group(cls=MlapiGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlapi")
def main() -> None:
    """mlapi: self-hosted object and face detection, offline on a CPU."""
