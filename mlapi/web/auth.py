"""Who is calling: keys, tokens, console sessions and keyless networks; the login route's
password check under the limiter."""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from typing import TypeVar
from urllib.parse import urlsplit

from aiohttp import web

from mlapi import edge, text
from mlapi.config import ServerConfig
from mlapi.errors import AuthError, RequestError, TooManyLogins
from mlapi.stores import KEY_PREFIX, ConsoleSession, rules
from mlapi.web.bodies import (
    _read_bounded,
    parse_json,
)
from mlapi.web.dialect import Access, route_info
from mlapi.web.state import (
    CLIENT,
    SERVER,
    ServerState,
    in_state,
)

log = logging.getLogger("mlapi.server")
T = TypeVar("T")
LOGIN_BODY_LIMIT = 4096


SESSION_COOKIE = "mlapi_session"  # the console's sign-in (HttpOnly, SameSite=Strict)
CSRF_HEADER = "X-CSRF-Token"  # what the console's own script sends with every change
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")


# -- authentication ----------------------------------------------------------------------
def _credentials(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    if header.lower().startswith("bearer "):
        secret: str | None = header[7:].strip()
    else:
        secret = (
            request.headers.get("X-API-Key")
            or request.headers.get("doods-auth-key")  # DOODS clients
            or request.match_info.get("key")
        )
    if secret is not None and not (secret.isascii() and secret.isprintable()):
        raise AuthError("invalid credentials")  # keys and tokens are printable ASCII
    return secret


def keyless(request: web.Request, config: ServerConfig) -> bool:
    """A client the operator lets in without a key: from a chosen network, to a chosen
    dialect (CodeProject.AI's client, a Frigate without a key, on the LAN)."""
    address = edge.parse_address(client(request) or "")
    if not config.keyless_networks or address is None:
        return False
    if not edge.within(address, config.keyless_networks):
        return False
    info = route_info(request)
    if info is None or not info.dialect.keyless:
        return False
    return info.dialect.name in config.keyless_dialects


async def authenticate(
    request: web.Request, state: ServerState, secret: str | None = None
) -> str | None:
    """The calling user, or None on an anonymous-enabled server."""
    secret = secret or _credentials(request)
    if secret is None:
        if state.config.allow_anonymous or keyless(request, state.config):
            if request.method not in SAFE_METHODS and edge.from_other_site(
                request.headers, own_host(request)
            ):  # a web page on another site, riding on the network's trust
                raise RequestError(403, "a request without a key may not come from another site")
            return None
        raise AuthError("Missing Authorization Header")
    user = await in_state(request, state.users.key_user, secret)
    if user is None and secret.startswith(KEY_PREFIX):
        raise AuthError("invalid API key")
    if user is not None:
        key_id = rules.key_id(secret)
        if key_id:
            state.key_uses[key_id] = time.time()
    if user is None:
        user, stamp = state.tokens.claims(secret)
        if not await current_stamp(request, state, user, stamp):
            raise AuthError("token is no longer valid; log in again")
    return user


async def console_session(request: web.Request, state: ServerState) -> ConsoleSession:
    """The console session its cookie names. A change (any method but GET) must carry the
    session's CSRF token in a header, which only the console's own script can read;
    SameSite=Strict already keeps other sites' requests from carrying the cookie."""
    secret = request.cookies.get(SESSION_COOKIE, "")
    if not (secret.isascii() and secret.isprintable() and 0 < len(secret) <= 128):
        raise AuthError("not signed in")
    session = await in_state(request, state.sessions.find, secret)
    if session is None or not await current_stamp(request, state, session.user, session.stamp):
        raise AuthError("the session has ended; sign in again")
    if request.method not in SAFE_METHODS:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), session.csrf.encode()):
            raise RequestError(403, f"missing or wrong {CSRF_HEADER} header")
    return session


async def current_stamp(request: web.Request, state: ServerState, user: str, stamp: str) -> bool:
    """A token's or session's stamp still holds: the user was not removed, re-created or
    given a new password since it was issued."""
    return await in_state(request, state.users.stamp, user) == stamp


def client(request: web.Request) -> str | None:
    """The client's address: the connection's own, or behind --trusted-proxies the one
    the proxy names (see mlapi.edge)."""
    if CLIENT not in request:
        request[CLIENT] = edge.client_address(
            request.remote,
            request.headers.getall("X-Forwarded-For", ()),
            request.headers.getall("Forwarded", ()),
            request.app[SERVER].config.trusted_proxies,
        )
    return request[CLIENT]


def own_host(request: web.Request) -> str:
    """This server's host and port as browsers name it: --public-url's, else the `Host`
    the request was sent to (checked by edge_middleware)."""
    public_url = request.app[SERVER].config.public_url
    return urlsplit(public_url).netloc if public_url else request.host


def signed_in(request: web.Request) -> bool:
    """The request carries a console session and no key or token of its own."""
    return SESSION_COOKIE in request.cookies and _credentials(request) is None


def access(request: web.Request) -> Access:
    """Who may call the matched route (see mlapi.web.dialect); an unmatched path's 404 or
    405 is anyone's to receive."""
    info = route_info(request)
    if info is None:
        return "public"
    if info.access == "metrics":
        return "public" if request.app[SERVER].config.public_metrics else "key"
    return info.access


async def read_credentials(request: web.Request) -> tuple[str, str]:
    """(username, password) from a small JSON body; 400, 408 or 413 otherwise."""
    state = request.app[SERVER]
    try:
        async with asyncio.timeout(state.config.read_timeout):
            raw = await _read_bounded(request, LOGIN_BODY_LIMIT)
    except TimeoutError as exc:
        raise RequestError(408, "request body took too long to arrive") from exc
    except AuthError as exc:
        raise RequestError(413, f"a login is under {LOGIN_BODY_LIMIT} bytes") from exc
    try:
        body = parse_json(raw)
    except RequestError as exc:
        raise RequestError(400, 'body must be JSON: {"username": …, "password": …}') from exc
    if not isinstance(body, dict) or not all(
        isinstance(body.get(k), str) for k in ("username", "password")
    ):
        raise RequestError(400, "username and password are required")
    return body["username"], body["password"]


async def check_password(request: web.Request, user: str, password: str) -> tuple[str, str]:
    """(user, their session stamp) when the password is right, under the login limiter
    (per user and address, shared by every process); AuthError or 429 otherwise."""
    state = request.app[SERVER]
    user = text.check(user, "the username")
    password = text.check(password, "the password")
    address = client(request) or "?"
    wait = await in_state(request, state.limiter.attempt, user, address)
    if wait:
        raise TooManyLogins(wait)
    async with state.hashing:
        ok = await asyncio.get_running_loop().run_in_executor(
            None, state.users.verify, user, password[:1024]
        )
    if not ok:
        raise AuthError("invalid username or password")
    await in_state(request, state.limiter.succeeded, user, address)
    stamp = await in_state(request, state.users.stamp, user)
    return user, stamp or ""
