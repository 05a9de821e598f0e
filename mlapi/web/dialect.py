"""What a dialect is, and how its routes say whose they are and who may call them.

A dialect is one value (`Dialect`) that installs its routes through `Routes`: every route is
registered with its dialect and its access (`public`, `key`, `session`, `metrics`), so the
middleware and the error rendering read the matched route, never the path. Dialects are
found through the `mlapi.dialects` entry-point group, the built-ins included, so a package
of its own adds one without editing mlapi.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Literal

from aiohttp import web
from aiohttp.web_urldispatcher import AbstractResource

from mlapi.errors import MlapiError

ENTRY_POINT_GROUP = "mlapi.dialects"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ErrorBody = Callable[[int, str, int | None], dict[str, Any]]
# public: anyone; key: a key, a token, a console session or a keyless network; session:
# only a signed-in console browser; metrics: public with --public-metrics, else key.
Access = Literal["public", "key", "session", "metrics"]


def api_error(status: int, message: str, code: int | None) -> dict[str, Any]:
    """mlapi's own error body (the seed's): the server's routes, and unknown /api/ paths."""
    return {"code": status, "msg": message}


def plain_error(status: int, message: str, code: int | None) -> dict[str, Any]:
    return {"error": message}


@dataclass(frozen=True)
class Dialect:
    name: str  # as --keyless-dialects names it
    add_routes: Callable[[Routes], None]
    error_body: ErrorBody = api_error
    form_key: str | None = None  # a form field its clients may carry their key in
    statuses: Mapping[type[MlapiError], int] = field(default_factory=dict)  # its own codes
    keyless: bool = True  # whether --keyless-networks may open it (the console: never)

    def status(self, error: MlapiError) -> int:
        for kind, status in self.statuses.items():
            if isinstance(error, kind):
                return status
        return error.status


# The server's own routes (health, login, models, metrics) speak mlapi's error body.
CORE = Dialect("core", lambda routes: None, keyless=False)


@dataclass(frozen=True)
class RouteInfo:
    dialect: Dialect
    access: Access


ROUTES = web.AppKey("routes", dict[tuple[AbstractResource, str], RouteInfo])


ExpectHandler = Callable[[web.Request], Awaitable[web.StreamResponse | None]]


class Routes:
    """Where a dialect adds its routes; each is recorded with its dialect and access.
    `expect`: what answers a POST's `Expect: 100-continue` (the server's size check)."""

    def __init__(self, app: web.Application, dialect: Dialect, expect: ExpectHandler) -> None:
        self.app, self.dialect, self.expect = app, dialect, expect

    def add(self, method: str, path: str, handler: Handler, access: Access = "key") -> None:
        router = self.app.router
        if method == "GET":
            route = router.add_get(path, handler)  # and HEAD, answered as GET
        elif method == "POST":
            route = router.add_post(path, handler, expect_handler=self.expect)
        else:
            route = router.add_route(method, path, handler)
        assert route.resource is not None
        self.app[ROUTES][(route.resource, method)] = RouteInfo(self.dialect, access)

    def get(self, path: str, handler: Handler, access: Access = "key") -> None:
        self.add("GET", path, handler, access)

    def post(self, path: str, handler: Handler, access: Access = "key") -> None:
        self.add("POST", path, handler, access)

    def put(self, path: str, handler: Handler, access: Access = "key") -> None:
        self.add("PUT", path, handler, access)

    def delete(self, path: str, handler: Handler, access: Access = "key") -> None:
        self.add("DELETE", path, handler, access)


def route_info(request: web.Request) -> RouteInfo | None:
    """The matched route's dialect and access; None for a path no route matched (404),
    or a method its route does not take (405)."""
    resource = request.match_info.route.resource
    if resource is None:
        return None
    method = "GET" if request.method == "HEAD" else request.method
    return request.app[ROUTES].get((resource, method))


def error_body(
    info: RouteInfo | None, path: str, status: int, message: str, code: int | None
) -> dict[str, Any]:
    """The body of an error answer, in the words of the route's dialect. A path no route
    matched speaks mlapi's body under /api/ (as the seed did), else a plain one."""
    if info is not None:
        return info.dialect.error_body(status, message, code)
    return (api_error if path.startswith("/api/") else plain_error)(status, message, code)


def installed() -> dict[str, Dialect]:
    """Every dialect from the entry-point group, by name; a duplicate is an error."""
    found: dict[str, Dialect] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        if ep.name in found:
            raise MlapiError(f"two installed dialects are named {ep.name!r}")
        dialect = ep.load()
        if not isinstance(dialect, Dialect):
            raise MlapiError(f"entry point {ep.name!r} ({ep.value}) is not a Dialect")
        if dialect.name != ep.name:
            raise MlapiError(f"entry point {ep.name!r} points at dialect {dialect.name!r}")
        found[ep.name] = dialect
    return found


def names() -> tuple[str, ...]:
    """The installed dialects' names, without importing them (for the CLI's help)."""
    return tuple(sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}))
