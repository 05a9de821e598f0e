"""`mlapi serve`: the HTTP server and its options."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mlapi.cli.common import (
    database_option,
    fail,
    main,
    parse_dialects,
    parse_models,
    parse_networks,
    parse_public_url,
)
from mlapi.config import WIDE_MIN_BYTES, RuntimeConfig, ServerConfig, StoreSettings

if TYPE_CHECKING:
    from mlapi.processes import Group
    from mlapi.stores import Stores

MIB = 1024 * 1024


def _processes(value: str) -> str:
    if value == "auto" or (value.isdigit() and 1 <= int(value) <= 256):
        return value
    raise click.BadParameter(f"{value!r} is not a number of processes from 1 to 256, or auto")


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
    help="Port to listen on [env: MLAPI_PORT].",
)
@click.option(
    "--models",
    "models",
    envvar="MLAPI_MODELS",
    help="Detectors loaded and warmed at start, comma-separated (default: "
    f"{', '.join(ServerConfig.models)}) [env: MLAPI_MODELS].",
)
@click.option(
    "--processes",
    default="1",
    show_default=True,
    envvar="MLAPI_PROCESSES",
    metavar="N|auto",
    callback=lambda ctx, param, value: _processes(value),
    help="Server processes sharing the port, each with its own engine and --workers "
    "threads; auto: one per --workers cores [env: MLAPI_PROCESSES].",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=RuntimeConfig.workers,
    show_default=True,
    envvar="MLAPI_WORKERS",
    help="Inference threads [env: MLAPI_WORKERS].",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    default=RuntimeConfig.intra_op_threads,
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
    f"waiting) or on the express lane, for networks of {WIDE_MIN_BYTES // MIB} MB or more; "
    "default: the CPU count, at most 4 [env: MLAPI_LONE_THREADS].",
)
@click.option(
    "--max-queue",
    type=click.IntRange(0, 10_000),
    default=ServerConfig.max_queue,
    show_default=True,
    envvar="MLAPI_MAX_QUEUE",
    help="Requests admitted beyond the busy workers (reading their body or queued for a "
    "worker) [env: MLAPI_MAX_QUEUE].",
)
@click.option(
    "--max-waiting",
    type=click.IntRange(0, 100_000),
    default=ServerConfig.max_waiting,
    show_default=True,
    envvar="MLAPI_MAX_WAITING",
    help="Requests that may wait, headers only, for admission, oldest first; more get 503 "
    "[env: MLAPI_MAX_WAITING].",
)
@click.option(
    "--max-wait",
    type=click.FloatRange(0, 3600),
    default=ServerConfig.max_wait,
    show_default=True,
    envvar="MLAPI_MAX_WAIT",
    help="Seconds a request may wait for admission before 503 [env: MLAPI_MAX_WAIT].",
)
@click.option(
    "--max-body-mb",
    type=click.FloatRange(0.1, 1024),
    default=ServerConfig.max_body // MIB,
    show_default=True,
    envvar="MLAPI_MAX_BODY_MB",
    help="Request body limit (413) [env: MLAPI_MAX_BODY_MB].",
)
@click.option(
    "--max-megapixels",
    type=click.FloatRange(0.1, 1000),
    default=RuntimeConfig.max_pixels // 1_000_000,
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
    default=",".join(ServerConfig.keyless_dialects),
    show_default=True,
    envvar="MLAPI_KEYLESS_DIALECTS",
    metavar="NAMES",
    help="Dialects --keyless-networks may call without a key: deepstack, compreface, doods, "
    "homegallery, mlapi, native, zoneminder, or an installed one's name "
    "[env: MLAPI_KEYLESS_DIALECTS].",
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
    "--zm-portal",
    default="",
    envvar="MLAPI_ZM_PORTAL",
    metavar="URL",
    help="The ZoneMinder portal (e.g. https://nvr.lan/zm) whose event frames zm_detect's "
    "event path asks for; its host must be in --allow-url-networks [env: MLAPI_ZM_PORTAL].",
)
@click.option("--zm-user", default="", envvar="MLAPI_ZM_USER", help="[env: MLAPI_ZM_USER]")
@click.option(
    "--zm-password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="A file holding the ZoneMinder user's password (or set MLAPI_ZM_PASSWORD; never "
    "on the command line).",
)
@click.option(
    "--zm-event-timeout",
    type=click.FloatRange(1, 600),
    default=ServerConfig.zm_event_timeout,
    show_default=True,
    envvar="MLAPI_ZM_EVENT_TIMEOUT",
    help="Seconds one zm_detect event request may take in all (login, waits, retries, "
    "frames, detection) [env: MLAPI_ZM_EVENT_TIMEOUT].",
)
@click.option(
    "--zm-events-per-user",
    type=click.IntRange(1, 1000),
    default=ServerConfig.zm_events_per_user,
    show_default=True,
    envvar="MLAPI_ZM_EVENTS_PER_USER",
    help="zm_detect event requests one user may have in flight; more get 429 "
    "[env: MLAPI_ZM_EVENTS_PER_USER].",
)
@click.option(
    "--trusted-proxies",
    default="",
    envvar="MLAPI_TRUSTED_PROXIES",
    metavar="CIDRS",
    help="Reverse proxies whose X-Forwarded-For or Forwarded header names the client, "
    "comma-separated (e.g. 127.0.0.1/32); from any other address those headers are "
    "ignored [env: MLAPI_TRUSTED_PROXIES].",
)
@click.option(
    "--public-url",
    default="",
    envvar="MLAPI_PUBLIC_URL",
    metavar="URL",
    help="The address clients reach this server at (e.g. https://vision.lan), for the "
    "console's client snippets and its same-origin checks; default: the listening "
    "address [env: MLAPI_PUBLIC_URL].",
)
@database_option
@click.option(
    "--db-timeout",
    type=click.FloatRange(0.1, 60),
    default=StoreSettings.db_timeout,
    show_default=True,
    envvar="MLAPI_DB_TIMEOUT",
    help="Seconds a database statement (or connecting) may take before the request gets "
    "503, or a key or password stamp read in the last 60 s is used [env: MLAPI_DB_TIMEOUT].",
)
@click.option(
    "--max-keys-per-user",
    type=click.IntRange(1, 100_000),
    default=StoreSettings.max_keys_per_user,
    show_default=True,
    envvar="MLAPI_MAX_KEYS_PER_USER",
    help="API keys one user may hold; creating another is refused "
    "[env: MLAPI_MAX_KEYS_PER_USER].",
)
@click.option(
    "--max-sessions-per-user",
    type=click.IntRange(1, 10_000),
    default=StoreSettings.max_sessions_per_user,
    show_default=True,
    envvar="MLAPI_MAX_SESSIONS_PER_USER",
    help="Console sessions one user may hold; a new sign-in closes the oldest "
    "[env: MLAPI_MAX_SESSIONS_PER_USER].",
)
@click.option(
    "--token-lifetime",
    type=click.IntRange(60, 30 * 86400),
    default=ServerConfig.token_lifetime,
    show_default=True,
    envvar="MLAPI_TOKEN_LIFETIME",
    help="Seconds an access token stays valid [env: MLAPI_TOKEN_LIFETIME].",
)
def serve(
    host: str,
    port: int,
    models: str | None,
    processes: str,
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
    zm_portal: str,
    zm_user: str,
    zm_password_file: Path | None,
    zm_event_timeout: float,
    zm_events_per_user: int,
    trusted_proxies: str,
    public_url: str,
    database: str,
    db_timeout: float,
    max_keys_per_user: int,
    max_sessions_per_user: int,
    token_lifetime: int,
) -> None:
    """Start the HTTP server (data: MLAPI_DATA_DIR, models: MLAPI_CACHE_DIR)."""
    import logging

    from mlapi.engine import Engine
    from mlapi.processes import Group, auto_count, supervise

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    names = tuple(parse_models((models,))) if models else ServerConfig.models
    config = ServerConfig(
        models=names,
        max_body=int(max_body_mb * MIB),
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
        token_lifetime=token_lifetime,
        zm_portal=zm_portal,
        zm_user=zm_user,
        zm_password=(
            zm_password_file.read_text().strip()
            if zm_password_file
            else os.environ.get("MLAPI_ZM_PASSWORD", "")
        ),
        zm_event_timeout=zm_event_timeout,
        zm_events_per_user=zm_events_per_user,
        trusted_proxies=parse_networks(trusted_proxies),
        public_url=parse_public_url(public_url),
    )
    settings = StoreSettings(
        db_timeout=db_timeout,
        max_keys_per_user=max_keys_per_user,
        max_sessions_per_user=max_sessions_per_user,
    )
    runtime = RuntimeConfig(
        workers=workers, intra_op_threads=threads, max_pixels=int(max_megapixels * 1e6)
    )
    if lone_threads is not None:
        runtime = replace(runtime, lone_threads=lone_threads)
    count = auto_count(workers) if processes == "auto" else int(processes)
    if count > 1 and lone_threads is None:  # the processes share the cores
        runtime = replace(runtime, lone_threads=max(1, min((os.cpu_count() or 1) // count, 4)))
    with Engine(config=runtime) as probe:  # missing models: one clear error, before any fork
        probe.check_models(names)
    shared = wait_for_stores(database, settings)
    try:
        anyone = shared.accounts.names()
    finally:
        shared.close()  # before any fork: no pool threads cross it
    if not anyone and not allow_anonymous:
        logging.getLogger("mlapi").warning("no users yet: create one with `mlapi adduser NAME`")
    if count == 1:
        serve_one(host, port, config, runtime, database, settings, None)
        return
    logging.getLogger("mlapi").info("starting %d processes on port %d", count, port)
    sys.exit(
        supervise(
            Group(count),
            lambda group: serve_one(host, port, config, runtime, database, settings, group),
        )
    )


PATIENCE_ENV = "MLAPI_DB_PATIENCE"


def db_patience() -> float:
    """Seconds to wait for a database that does not answer: $MLAPI_DB_PATIENCE, else 60."""
    try:
        return max(0.0, float(os.environ.get(PATIENCE_ENV) or 60.0))
    except ValueError:
        return 60.0


def wait_for_stores(
    database: str, settings: StoreSettings | None = None, patience: float | None = None
) -> Stores:
    """The stores; a database that does not answer yet (it starts beside us) is waited
    for, up to `patience` seconds (default: db_patience())."""
    import logging

    from mlapi.errors import StoreUnavailable
    from mlapi.stores import open_stores

    deadline = time.monotonic() + (db_patience() if patience is None else patience)
    while True:
        try:
            return open_stores(database=database, settings=settings)
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            logging.getLogger("mlapi").warning("waiting for the database…")
            time.sleep(2)


def serve_one(
    host: str,
    port: int,
    config: ServerConfig,
    runtime: RuntimeConfig,
    database: str,
    settings: StoreSettings,
    group: Group | None,
) -> None:
    """One server process: its own engine, the shared stores, the port (shared with the
    other processes of `group`)."""
    import asyncio
    import logging

    from aiohttp import web

    from mlapi.engine import Engine, map_large_buffers
    from mlapi.errors import StoreUnavailable
    from mlapi.processes import EX_TEMPFAIL
    from mlapi.web.app import create_app
    from mlapi.web.logs import AccessLog

    map_large_buffers()  # process-wide: big images' memory goes back to the system
    stores: Stores | None = None
    try:
        stores = wait_for_stores(database, settings)
        engine = Engine(config=runtime, gallery=stores.faces)
        app = create_app(engine, stores, config, group)
    except StoreUnavailable as exc:
        if group is None:
            raise
        if stores is not None:
            stores.close()
        # Not a failure a restart cannot fix: the parent starts this process again later.
        logging.getLogger("mlapi").error("process %d: %s", group.slot, exc)
        sys.exit(EX_TEMPFAIL)
    logging.getLogger("mlapi").info("state: %s", stores.where)

    async def close_engine(_: web.Application) -> None:
        engine.close()
        stores.close()

    app.on_cleanup.append(close_engine)
    if group is not None:  # the parent kills a process whose event loop stops beating
        beating: list[asyncio.Task[None]] = []

        async def start_beating(_: web.Application) -> None:
            beating.append(asyncio.create_task(group.heartbeat()))

        async def stop_beating(_: web.Application) -> None:
            for task in beating:  # first: the rest of the cleanup is not watched
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

        app.on_startup.append(start_beating)
        app.on_cleanup.insert(0, stop_beating)
    # SIGTERM/SIGINT stop accepting, let in-flight requests finish (up to 30 s), then exit.
    try:
        web.run_app(
            app,
            host=host,
            port=port,
            shutdown_timeout=30,
            reuse_port=group is not None,
            access_log_class=AccessLog,
            print=lambda text: logging.getLogger("mlapi").info(text.strip()),
        )
    except OSError as exc:
        if exc.errno in (errno.EADDRINUSE, errno.EACCES, errno.EADDRNOTAVAIL):
            why = {errno.EADDRINUSE: "is in use", errno.EACCES: "needs privileges"}
            fail(
                f"{host}:{port} {why.get(exc.errno, 'is not an address here')}: "
                "choose another with --port / --host (or MLAPI_PORT / MLAPI_HOST)"
            )
        raise


@main.command()
@click.option(
    "--url",
    default=lambda: f"http://127.0.0.1:{os.environ.get('MLAPI_PORT', '5000')}",
    show_default="http://127.0.0.1:$MLAPI_PORT",
    help="The server to ask.",
)
def health(url: str) -> None:
    """Exit 0 when the server at URL answers /health (a container's health check)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{url.rstrip('/')}/health", timeout=5) as answer:
            ok = answer.status == 200
    except OSError as exc:
        click.echo(f"{url}: {exc}", err=True)
        ok = False
    sys.exit(0 if ok else 1)
