"""The server's own routes: health, readiness, metrics, models, the OpenAPI document."""

from __future__ import annotations

import time
from typing import TypeVar

from aiohttp import web

from mlapi import __version__, metrics, openapi
from mlapi.web.answers import (
    json_text,
)
from mlapi.web.auth import (
    check_password,
    read_credentials,
)
from mlapi.web.state import (
    ENGINE,
    SERVER,
)

T = TypeVar("T")


# -- health and meta ---------------------------------------------------------------------
@openapi.operation("liveness and uptime", auth=False, tag="meta")
async def health(request: web.Request) -> web.Response:
    uptime = int((time.monotonic() - request.app[SERVER].started) * 1000)
    return web.json_response({"health": "OK", "uptime": uptime})


@openapi.operation("200 once the models are loaded, else 503", auth=False, tag="meta")
async def ready(request: web.Request) -> web.Response:
    state = request.app[SERVER]
    ready = state.everyone_ready()  # with --processes: every process is warm
    body = {"ready": ready, "models": list(state.config.models)}
    return web.json_response(body, status=200 if ready else 503)


@openapi.operation(
    "Prometheus metrics: requests by route and status, queue depth, rejections, inference "
    "time per detector (no key needed with --public-metrics)",
    tag="meta",
)
async def metrics_text(request: web.Request) -> web.Response:
    """Prometheus text format: requests, queue, rejections, inference time per detector;
    with --processes, every process's counters summed."""
    state = request.app[SERVER]
    processes = state.group.size if state.group else 1
    devices = request.app[ENGINE].runtime.devices()
    text = metrics.render(state.whole(), processes, devices)
    return web.Response(text=text, content_type="text/plain")


@openapi.operation("mlapi 2.x health check", auth=False, tag="mlapi")
async def mlapi_health(request: web.Request) -> web.Response:
    return web.json_response("ok")


@openapi.operation("installed detectors and their options", tag="native")
async def list_models(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    devices = engine.runtime.devices()  # the loaded ones, where they run
    rows = [
        {
            "name": name,
            "task": cls.task,
            "description": cls.description,
            "needs": list(cls.needs),
            "options": {k: v for k, v in cls.Options().as_dict().items()},
            **({"device": devices[name]} if name in devices else {}),
        }
        for name, cls in sorted(engine.registry.items())
    ]
    return json_text({"version": __version__, "models": rows})


@openapi.operation("this document", auth=False, tag="meta")
async def openapi_document(request: web.Request) -> web.Response:
    return json_text(openapi.document(request.app))


@openapi.operation(
    "exchange a username and password for an access token",
    auth=False,
    tag="mlapi",
    body=openapi.body(
        "application/json",
        {"username": {"type": "string"}, "password": {"type": "string"}},
        ["username", "password"],
    ),
)
async def login(request: web.Request) -> web.Response:
    state = request.app[SERVER]
    user, password = await read_credentials(request)
    user, stamp = await check_password(request, user, password)
    token = state.tokens.issue(user, stamp)
    return web.json_response({"access_token": token, "expires": state.tokens.lifetime})
