"""The server as users run it: the core application plus every dialect.

A dialect is a module with a `DIALECT` (mlapi.dialect.Dialect) whose `add_routes(app)`
registers its routes; it parses its own requests and renders its own answers. Adding one
is that module and one line in mlapi.dialects.MODULES.
"""

from __future__ import annotations

from aiohttp import web

from mlapi import dialects
from mlapi.config import ServerConfig
from mlapi.engine import Engine
from mlapi.processes import Group
from mlapi.server import DIALECTS, core_app
from mlapi.state import Stores


def create_app(
    engine: Engine, stores: Stores, config: ServerConfig | None = None, group: Group | None = None
) -> web.Application:
    app = core_app(engine, stores, config, group)
    for dialect in dialects.load():
        dialect.add_routes(app)
        app[DIALECTS].append(dialect)
    return app
