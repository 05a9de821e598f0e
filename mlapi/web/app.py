"""The composition: the application, its middleware, state, dialects and background tasks."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import Iterable

from aiohttp import web

from mlapi.config import ServerConfig
from mlapi.engine import Engine
from mlapi.errors import MlapiError
from mlapi.processes import PUBLISH_SECONDS, Group
from mlapi.sightings.settings import FaceMemory
from mlapi.stores import Stores
from mlapi.web.admission import (
    refuse_large_expect,
)
from mlapi.web.answers import (
    security_headers,
    server_timing,
)
from mlapi.web.dialect import CORE, ROUTES, Dialect, Routes, installed
from mlapi.web.logs import QuietBadRequests
from mlapi.web.middleware import (
    admission_middleware,
    auth_middleware,
    edge_middleware,
    errors_middleware,
    forgiving_paths,
)
from mlapi.web.routes import (
    health,
    list_models,
    login,
    metrics_text,
    mlapi_health,
    openapi_document,
    ready,
)
from mlapi.web.state import (
    ENGINE,
    PUBLISHING,
    RECORDING,
    SERVER,
    WARMING,
    ServerState,
)

log = logging.getLogger("mlapi.server")
KEY_USE_FLUSH = 30.0  # seconds between writes of keys' last use (one batch, not per request)


def create_app(
    engine: Engine,
    stores: Stores,
    config: ServerConfig | None = None,
    group: Group | None = None,
    dialects: Iterable[Dialect] | None = None,
    memory: FaceMemory | None = None,
) -> web.Application:
    """The server: its middleware, state, warm-up, its own routes (health, readiness,
    metrics, login, models, OpenAPI) and every installed dialect's (or `dialects`).
    `group`: the processes this one serves with (`serve --processes`); `memory`: what it
    keeps of the faces it sees (default: the defaults, on)."""
    config = config or ServerConfig()
    engine.plan(config.models)  # unknown detector names fail before the server starts
    app = web.Application(
        client_max_size=config.max_body,
        middlewares=[
            edge_middleware,
            forgiving_paths,
            errors_middleware,
            auth_middleware,
            admission_middleware,
        ],
    )
    engine.runtime.gallery = stores.faces  # one owner of the known faces: the stores
    engine.runtime.plates = stores.plates  # and of the known plates
    app[ENGINE] = engine
    app[ROUTES] = {}
    app[SERVER] = ServerState(engine, stores, config, group, memory or FaceMemory())
    if config.uploads:
        config.uploads.mkdir(parents=True, exist_ok=True)
    core = Routes(app, CORE, refuse_large_expect)
    core.get("/health", health, "public")
    core.get("/ready", ready, "public")
    core.get("/api/v1/health", mlapi_health, "public")
    core.get("/metrics", metrics_text, "metrics")
    core.post("/api/v1/login", login, "public")
    core.get("/api/v1/models", list_models)
    core.get("/api/v1/openapi.json", openapi_document, "public")
    chosen = list(installed().values()) if dialects is None else list(dialects)
    for dialect in chosen:
        dialect.add_routes(Routes(app, dialect, refuse_large_expect))

    async def warm() -> None:
        state = app[SERVER]
        await asyncio.get_running_loop().run_in_executor(None, engine.warm, config.models)
        blank = _blank_jpeg()
        for name in config.models:  # one real inference each, so the first request is fast
            await engine.detect_async(blank, [name])
        # What start-up made lives as long as the server: out of the collector's way, so
        # its full collections (which hold the interpreter lock) walk only requests' objects.
        gc.collect()
        gc.freeze()
        state.ready = True
        if group:
            group.set_ready(True)
        log.info("ready: %s", ", ".join(config.models))

    async def publish() -> None:
        assert group is not None
        while True:  # the other processes' scrapes read this (see mlapi.processes)
            group.publish(app[SERVER].snapshot())
            await asyncio.sleep(PUBLISH_SECONDS)

    async def record_key_uses() -> None:
        state = app[SERVER]
        while True:
            await asyncio.sleep(KEY_USE_FLUSH)
            try:
                await asyncio.get_running_loop().run_in_executor(
                    state.store_calls, state.flush_key_uses
                )
            except MlapiError as exc:  # the database is away: a later batch says it
                log.warning("could not record when API keys were last used: %s", exc)

    async def start_warming(app: web.Application) -> None:
        # The port opens at once and /ready answers 503 until the models are warm.
        app[WARMING] = asyncio.create_task(warm())
        app[RECORDING] = asyncio.create_task(record_key_uses())
        if group:
            app[PUBLISHING] = asyncio.create_task(publish())

    async def stop_warming(app: web.Application) -> None:
        for key in (WARMING, PUBLISHING, RECORDING):
            if key in app:
                app[key].cancel()
                with contextlib.suppress(asyncio.CancelledError, MlapiError):
                    await app[key]
        with contextlib.suppress(MlapiError):
            app[SERVER].flush_key_uses()
        if group:
            group.set_ready(False)
            group.publish(app[SERVER].snapshot())
        recorder = app[SERVER].recorder
        if recorder is not None:  # what recognition saw last is written
            await asyncio.get_running_loop().run_in_executor(None, recorder.close)
        app[SERVER].io.shutdown(wait=False)
        app[SERVER].store_calls.shutdown(wait=False)

    bad_requests = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, QuietBadRequests) for f in bad_requests.filters):
        bad_requests.addFilter(QuietBadRequests())
    app.on_startup.append(start_warming)
    app.on_cleanup.append(stop_warming)
    app.on_response_prepare.append(server_timing)
    app.on_response_prepare.append(security_headers)
    return app


def _blank_jpeg() -> bytes:
    import numpy as np

    from mlapi.images import encode_jpeg

    return encode_jpeg(np.full((64, 64, 3), 127, np.uint8))
