"""The server as users run it: the core application plus every dialect module.

A dialect is a module with `add_routes(app)` that registers its routes, parses its own
requests and renders its own answers (errors go through `mlapi.server.error_response`).
Adding one is that module and one line in DIALECTS.
"""

from __future__ import annotations

from aiohttp import web

from mlapi.auth import TokenIssuer
from mlapi.dialects import (
    compreface,
    deepstack,
    doods,
    homegallery,
    mlapi_seed,
    native,
    zoneminder,
)
from mlapi.engine import Engine
from mlapi.server import ServerConfig, core_app
from mlapi.users import UserStore

DIALECTS = (native, mlapi_seed, homegallery, deepstack, compreface, zoneminder, doods)


def create_app(
    engine: Engine, users: UserStore, tokens: TokenIssuer, config: ServerConfig | None = None
) -> web.Application:
    app = core_app(engine, users, tokens, config)
    for dialect in DIALECTS:
        dialect.add_routes(app)
    return app
