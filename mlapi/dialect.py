"""What a dialect is: one value that says everything the server needs to know about it.

Each module in `mlapi.dialects` defines `DIALECT`; the server looks a request's dialect up
by path (the longest prefix wins) for its error body, its status for an error, whether its
clients may carry their key in the form, and which paths `--keyless-dialects` opens.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from mlapi.errors import MlapiError

ErrorBody = Callable[[int, str, int | None], dict[str, Any]]


def api_error(status: int, message: str, code: int | None) -> dict[str, Any]:
    """mlapi's own error body (the seed's): every /api/ path without a body of its own."""
    return {"code": status, "msg": message}


def plain_error(status: int, message: str, code: int | None) -> dict[str, Any]:
    return {"error": message}


@dataclass(frozen=True)
class Dialect:
    name: str  # as --keyless-dialects names it
    prefixes: tuple[str, ...]  # the paths its clients call
    add_routes: Callable[[web.Application], None]
    error_body: ErrorBody | None = None  # None: api_error under /api/, else plain_error
    form_key: str | None = None  # a form field its clients may carry their key in
    statuses: Mapping[type[MlapiError], int] = field(default_factory=dict)  # its own codes
    # Paths anyone may ask for, without a key: exact, or every path under one ending in "/".
    public: tuple[str, ...] = ()

    def owns(self, path: str) -> bool:
        return any(_under(path, prefix) for prefix in self.prefixes)

    def status(self, error: MlapiError) -> int:
        for kind, status in self.statuses.items():
            if isinstance(error, kind):
                return status
        return error.status


def dialect_of(dialects: Iterable[Dialect], path: str) -> Dialect | None:
    """The dialect whose prefix is the longest match for `path`, if any."""
    best: tuple[int, Dialect | None] = (0, None)
    for dialect in dialects:
        for prefix in dialect.prefixes:
            if _under(path, prefix) and len(prefix) > best[0]:
                best = (len(prefix), dialect)
    return best[1]


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def error_body(
    dialect: Dialect | None, path: str, status: int, message: str, code: int | None
) -> dict[str, Any]:
    """The body of an error answer, in the words of the dialect `path` belongs to."""
    if dialect is not None and dialect.error_body is not None:
        return dialect.error_body(status, message, code)
    return (api_error if path.startswith("/api/") else plain_error)(status, message, code)
