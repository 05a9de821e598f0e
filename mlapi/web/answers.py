"""What the server answers besides a dialect's documents: errors in the dialect's shape,
JSON, the headers every answer carries, and paths fit for a log."""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from aiohttp import web

from mlapi.result import dumps
from mlapi.web.dialect import Dialect, error_body, route_info
from mlapi.web.state import (
    INFERENCE_MS,
    STAGES,
    STARTED,
)

log = logging.getLogger("mlapi.server")
HG_KEY = re.compile(r"(/hg/)[^/]+", re.IGNORECASE)  # wherever it appears in a path


SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


# -- errors ------------------------------------------------------------------------------
def dialect(request: web.Request) -> Dialect | None:
    """The dialect of the route the request matched (None: no route matched)."""
    info = route_info(request)
    return info.dialect if info else None


def error_response(
    request: web.Request,
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    code: int | None = None,
) -> web.Response:
    """The error body of the request's dialect (`code`: a dialect's own error code)."""
    body = error_body(route_info(request), request.path, status, message, code)
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


def safe_path(path: str) -> str:
    """A path fit for a log line: API keys in /hg/KEY masked, control characters escaped
    (so `%0a` cannot forge a line)."""
    masked = HG_KEY.sub(r"\1***", path)
    return masked.encode("unicode_escape", "backslashreplace").decode("ascii")


def json_text(document: Any) -> web.Response:
    return web.Response(text=dumps(document), content_type="application/json")


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


async def server_timing(request: web.Request, response: web.StreamResponse) -> None:
    """Timings go in a header, never in the body (bodies must match the CLI's bytes)."""
    if STARTED in request:
        total = (time.perf_counter() - request[STARTED]) * 1000
        timing = f"total;dur={total:.2f}"
        if INFERENCE_MS in request:
            timing = f"inference;dur={request[INFERENCE_MS]:.2f}, {timing}"
        stages = [f"{n};dur={t * 1000:.2f}" for n, t in request.get(STAGES, {}).items()]
        if stages:  # each detector's share, in the order they ran
            timing = f"{', '.join(stages)}, {timing}"
        response.headers["Server-Timing"] = timing
