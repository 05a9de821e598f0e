"""`mlapi serve`: the HTTP server and its options."""

from __future__ import annotations

import contextlib
import errno
import os
import sys
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import click

from mlapi.cli.common import (
    database_option,
    fail,
    main,
)
from mlapi.cli.settings import build, dialect_settings, options
from mlapi.config import RuntimeConfig, ServerConfig, StoreSettings
from mlapi.sightings.settings import FaceMemory

if TYPE_CHECKING:
    from mlapi.processes import Group
    from mlapi.stores import Stores

MIB = 1024 * 1024


def _processes(value: str) -> str:
    if value == "auto" or (value.isdigit() and 1 <= int(value) <= 256):
        return value
    raise click.BadParameter(f"{value!r} is not a number of processes from 1 to 256, or auto")


# -- serve -------------------------------------------------------------------------------
# Every setting but where to listen comes from the settings dataclasses (mlapi.config), each
# dialect's own included: declared once there, offered here.
SETTINGS = [(RuntimeConfig, ""), (ServerConfig, ""), (StoreSettings, ""), (FaceMemory, "")] + [
    (cls, f"{name}__") for name, cls in dialect_settings().items()
]


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
    "--processes",
    default="1",
    show_default=True,
    envvar="MLAPI_PROCESSES",
    metavar="N|auto",
    callback=lambda ctx, param, value: _processes(value),
    help="Server processes sharing the port, each with its own engine and --workers "
    "threads; auto: one per --workers cores [env: MLAPI_PROCESSES].",
)
@database_option
@options(SETTINGS)
def serve(host: str, port: int, processes: str, database: str, **values: Any) -> None:
    """Start the HTTP server (data: MLAPI_DATA_DIR, models: MLAPI_CACHE_DIR)."""
    import logging

    from mlapi.engine import Engine
    from mlapi.processes import Group, auto_count, supervise

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    dialects = {p.rstrip("_"): build(cls, values, p) for cls, p in SETTINGS if p}
    config = build(ServerConfig, values, dialects=dialects)
    settings = build(StoreSettings, values)
    runtime = build(RuntimeConfig, values)
    memory = build(FaceMemory, values)
    count = auto_count(runtime.workers) if processes == "auto" else int(processes)
    if count > 1 and values.get("lone_threads") is None:  # the processes share the cores
        runtime = replace(runtime, lone_threads=max(1, min((os.cpu_count() or 1) // count, 4)))
    with Engine(config=runtime) as probe:  # missing models: one clear error, before any fork
        probe.check_models(config.models)
    shared = wait_for_stores(database, settings)
    try:
        anyone = shared.accounts.names()
    finally:
        shared.close()  # before any fork: no pool threads cross it
    if not anyone and not config.allow_anonymous:
        logging.getLogger("mlapi").warning("no users yet: create one with `mlapi adduser NAME`")
    if count == 1:
        serve_one(host, port, config, runtime, database, settings, None, memory)
        return
    logging.getLogger("mlapi").info("starting %d processes on port %d", count, port)
    sys.exit(
        supervise(
            Group(count),
            lambda group: serve_one(host, port, config, runtime, database, settings, group, memory),
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
    memory: FaceMemory | None = None,
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
        app = create_app(engine, stores, config, group, memory=memory)
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
    if group is None:  # one process: it talks to systemd itself (--processes: the parent)
        speak_to_systemd(app)
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


def speak_to_systemd(app: Any) -> None:
    """systemd's notify protocol for a lone server process (when NOTIFY_SOCKET is set):
    READY=1 once the warm-up is done, WATCHDOG=1 from the event loop (so a stuck loop stops
    the pings and systemd restarts the server), STOPPING=1 when the drain starts."""
    import asyncio

    from aiohttp import web

    from mlapi import notify
    from mlapi.web.state import SERVER

    if not notify.enabled():
        return
    tasks: list[asyncio.Task[None]] = []

    async def speak() -> None:
        interval = notify.watchdog_interval()
        told_ready = False
        next_ping = 0.0
        while True:
            if not told_ready and app[SERVER].ready:
                notify.notify("READY=1")
                told_ready = True
                if interval is None:
                    return
            now = time.monotonic()
            if interval is not None and now >= next_ping:
                notify.notify("WATCHDOG=1")
                next_ping = now + interval
            await asyncio.sleep(0.1 if interval is None else min(0.1, interval))

    async def start(_: web.Application) -> None:
        tasks.append(asyncio.create_task(speak()))

    async def stopping(_: web.Application) -> None:
        notify.notify("STOPPING=1")

    async def stop(_: web.Application) -> None:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app.on_startup.append(start)
    app.on_shutdown.insert(0, stopping)
    app.on_cleanup.append(stop)


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
