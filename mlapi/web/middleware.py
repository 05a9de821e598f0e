"""The middleware every request passes, in order: the edge (Host, text), forgiving paths,
errors, authentication, admission."""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from typing import TypeVar

from aiohttp import ClientPayloadError, web

from mlapi import edge, text
from mlapi.errors import AuthError, MlapiError
from mlapi.web.admission import (
    admit,
    body_limit_message,
    declared_too_large,
)
from mlapi.web.answers import (
    dialect,
    error_response,
    safe_path,
)
from mlapi.web.auth import (
    _credentials,
    access,
    authenticate,
    console_session,
    signed_in,
)
from mlapi.web.bodies import check_fields
from mlapi.web.dialect import Handler
from mlapi.web.state import (
    ADMITTED,
    AUTHENTICATED,
    SERVER,
    STARTED,
    USER,
)

log = logging.getLogger("mlapi.server")
T = TypeVar("T")


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await _answer(request, handler)
    state = request.app[SERVER]
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unknown"
    state.requests[(request.method, name, response.status)] += 1
    answered, spent = state.latency.get(name, (0, 0.0))
    state.latency[name] = (answered + 1, spent + time.perf_counter() - request[STARTED])
    # A refusal is work the server would not take; /ready's 503 while warming is not one.
    if response.status in (413, 429, 503) and access(request) != "public":
        state.rejected[response.status] += 1
    return response


async def _answer(request: web.Request, handler: Handler) -> web.StreamResponse:
    request[STARTED] = time.perf_counter()
    try:
        return await handler(request)
    except MlapiError as exc:
        owner = dialect(request)
        status = owner.status(exc) if owner else exc.status
        busy = status == 503  # overload, or the database: either passes
        wait = exc.retry_after or (1 if busy else None)
        headers = {"Retry-After": str(wait)} if wait else None
        if status == 401 and request.path.startswith("/api/"):
            headers = {"WWW-Authenticate": "Bearer"}
        message = text.shown(exc.message)  # it may quote what the client sent
        return error_response(request, status, message, headers, exc.code)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        message = exc.text if exc.text and not exc.text[0].isdigit() else exc.reason
        if exc.status == 413:
            message = body_limit_message(request)
        keep = {k: v for k, v in exc.headers.items() if k.lower() in ("retry-after", "allow")}
        return error_response(request, exc.status, text.shown(message), keep)
    except asyncio.CancelledError:
        raise
    except (ConnectionResetError, ClientPayloadError, asyncio.IncompleteReadError) as exc:
        # The client went away or sent a broken body: its problem, not a server error.
        log.info("incomplete request body on %s: %s", safe_path(request.path), exc)
        return error_response(request, 400, "request body incomplete")
    except Exception:
        log.exception("unhandled error on %s %s", request.method, safe_path(request.path))
        return error_response(request, 500, "internal error; see the server log")


# -- the edge ----------------------------------------------------------------------------
@web.middleware
async def edge_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """What every request must be before anything reads it: a usable `Host` (nothing
    builds a URL from one with port `abc`), and path parameters and query that are valid
    text (a NUL byte never reaches a store)."""
    host = request.headers.get("Host")
    if host and not edge.valid_host(host):
        return error_response(request, 400, "the Host header is not a host name and port")
    try:
        for name, value in request.match_info.items():
            text.check(value, f"the path's {name}")
        check_fields(request.query)
    except MlapiError as exc:
        return error_response(request, exc.status, text.shown(exc.message))
    return await handler(request)


# -- forgiving paths ---------------------------------------------------------------------
DOUBLED_SLASHES = re.compile(r"//+")


@web.middleware
async def forgiving_paths(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A path that matches no route is tried again with doubled slashes merged and a
    trailing slash dropped (`/v1/vision/detection/`, a HomeGallery base URL ending in `/`:
    `/hg/KEY//objects`). It happens before authentication, and the request then goes
    through every middleware as if it had been sent to the canonical path."""
    error = request.match_info.http_exception
    if error is None or error.status != 404:
        return await handler(request)
    path = DOUBLED_SLASHES.sub("/", request.path)
    path = path.rstrip("/") or "/"
    if path == request.path:
        return await handler(request)
    canonical = request.clone(rel_url=request.rel_url.with_path(path))
    match = await request.app.router.resolve(canonical)
    if match.http_exception is not None:
        return await handler(request)  # the original 404
    match.add_app(request.app)
    match.freeze()
    canonical._match_info = match  # what aiohttp's own dispatch sets
    chain = match.handler
    rest = list(request.app.middlewares)
    for middleware in reversed(rest[rest.index(forgiving_paths) + 1 :]):
        chain = functools.partial(middleware, handler=chain)
    return await chain(canonical)


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Route first (unknown path: 404), then authenticate from headers, path or query.

    A dialect whose clients may send their key as a form field (DeepStack's `api_key`):
    without a key in the headers, its handler authenticates from the form (read_upload)."""
    route_error = request.match_info.http_exception
    if route_error is not None:
        raise route_error
    state = request.app[SERVER]
    needs = access(request)
    if needs == "public":
        return await handler(request)
    if signed_in(request):
        request[USER] = (await console_session(request, state)).user
        request[AUTHENTICATED] = True
        return await handler(request)
    if needs == "session":  # the console's API is its page's: a key or token is not enough
        raise AuthError("sign in to the console first")
    owner = dialect(request)
    if owner is None or owner.form_key is None or _credentials(request) is not None:
        request[USER] = await authenticate(request, state)
        request[AUTHENTICATED] = True
    return await handler(request)


@web.middleware
async def admission_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse work the server cannot take (503) from the headers, before reading a body.

    Only authenticated requests take a slot here. A DeepStack form whose key is in the body
    takes its slot once the key is checked (see `read_upload`), so strangers hold none."""
    if request.method != "POST" or access(request) == "public":
        return await handler(request)
    state = request.app[SERVER]
    if declared_too_large(request):
        raise web.HTTPRequestEntityTooLarge(
            max_size=state.config.max_body, actual_size=request.content_length or 0
        )
    try:
        if request.get(AUTHENTICATED, False):
            await admit(request)
        return await handler(request)
    finally:
        if request.get(ADMITTED, False):
            request[ADMITTED] = False
            state.release()
