"""`mlapi serve`: the aiohttp adapter over the engine, speaking each client's dialect.

Requests are parsed and checked here, inference runs in the engine's bounded pool, and
answers are rendered by the same renderers the CLI uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import hmac
import json
import logging
import re
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit

from aiohttp import BodyPartReader, ClientPayloadError, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from mlapi import __version__, edge, metrics, openapi, text
from mlapi.auth import TokenIssuer
from mlapi.config import ServerConfig
from mlapi.dialect import Dialect, dialect_of, error_body
from mlapi.engine import Engine
from mlapi.errors import AuthError, MlapiError
from mlapi.fetch import fetch_image
from mlapi.images import pixel_cost, sniff
from mlapi.processes import PUBLISH_SECONDS, Group
from mlapi.result import Result, dumps
from mlapi.state import KEY_PREFIX, ConsoleSession, Stores, rules

log = logging.getLogger("mlapi.server")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")
PUBLIC = {"/health", "/ready", "/api/v1/health", "/api/v1/login", "/api/v1/openapi.json"}
SESSION_COOKIE = "mlapi_session"  # the console's sign-in (HttpOnly, SameSite=Strict)
CSRF_HEADER = "X-CSRF-Token"  # what the console's own script sends with every change
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
KEY_USE_FLUSH = 30.0  # seconds between writes of keys' last use (one batch, not per request)
# Every answer: the console's page runs only its own files; JSON is never sniffed as HTML.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class RequestError(MlapiError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class ServerState:
    def __init__(
        self, engine: Engine, stores: Stores, config: ServerConfig, group: Group | None = None
    ) -> None:
        self.engine, self.config, self.group = engine, config, group
        # Counts a restarted process of a group continues from (see mlapi.processes).
        self.base = group.previous() if group else None
        self.users, self.limiter = stores.accounts, stores.logins
        self.sessions, self.faces = stores.sessions, stores.faces
        self.key_uses: dict[str, float] = {}  # key id → last use, until the next flush
        self.tokens = TokenIssuer(stores.secret.get(), config.token_lifetime)
        self.hashing = asyncio.Semaphore(2)  # argon2 costs ~64 MiB and ~0.1 s each
        self.keyless_bodies = asyncio.Semaphore(config.max_keyless_bodies)
        # Work that grows with the input but is not inference (parsing a big JSON body,
        # reading and writing the gallery) runs here, never on the event loop.
        self.io = ThreadPoolExecutor(2, thread_name_prefix="mlapi-io")
        # The stores' calls (a file's snapshot, or a database round trip) run here: many
        # small ones at once, never on the event loop.
        self.state_io = ThreadPoolExecutor(8, thread_name_prefix="mlapi-state")
        self.started = time.monotonic()
        self.ready = False
        self.inflight = 0  # requests on the inference pool
        self.admitted = 0  # requests past admission (reading a body or on the pool)
        self.waiting: deque[asyncio.Future[None]] = deque()  # oldest first; headers only
        self.requests: Counter[tuple[str, str, int]] = Counter()  # (method, route, status)
        self.latency: dict[str, tuple[int, float]] = {}  # route → (answered, seconds)
        self.rejected: Counter[int] = Counter()  # refused by admission or limits, by status

    async def admit(self) -> None:
        """A slot now, or in turn (oldest first) within max_wait; 503 for real overload."""
        if self.admitted < self.capacity and not self.waiting:
            self.admitted += 1
            return
        if len(self.waiting) >= self.config.max_waiting:
            raise RequestError(503, "server is busy; retry shortly")
        turn = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        try:
            async with asyncio.timeout(self.config.max_wait):
                await turn  # a finishing request hands its slot over (see release)
        except TimeoutError:
            if turn.done() and not turn.cancelled():
                return  # handed a slot in the same pass as the deadline: it is ours
            raise RequestError(503, "server is busy; retry shortly") from None
        except BaseException:
            if turn.done() and not turn.cancelled():  # handed a slot just as we gave up
                self.release()
            raise
        finally:
            with contextlib.suppress(ValueError):
                self.waiting.remove(turn)

    def release(self) -> None:
        """Hand the slot to the oldest waiting request, or free it."""
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.admitted -= 1

    @property
    def capacity(self) -> int:
        return self.engine.config.workers + self.config.max_queue

    def snapshot(self) -> metrics.Snapshot:
        """This process's counters (continuing a predecessor's in a group)."""
        live: metrics.Snapshot = {
            "requests": [(*key, n) for key, n in self.requests.items()],
            "rejected": list(self.rejected.items()),
            "queue": {
                "waiting": len(self.waiting),
                "admitted": self.admitted,
                "inference": self.inflight,
            },
            "inference": [(n, r, s) for n, (r, s) in self.engine.timings.snapshot().items()],
            "latency": [(route, n, spent) for route, (n, spent) in self.latency.items()],
            "ready": self.ready,
        }
        if self.base is None:
            return metrics.merge([live])
        merged = metrics.merge([live, {**self.base, "queue": {}, "ready": True}])
        return {**merged, "ready": self.ready}

    def whole(self) -> metrics.Snapshot:
        """Every process's counters (this one live), as /metrics shows them."""
        mine = self.snapshot()
        return self.group.gather(mine) if self.group else mine

    def flush_key_uses(self) -> None:
        used, self.key_uses = self.key_uses, {}
        if used:
            self.users.keys_used(used)

    def everyone_ready(self) -> bool:
        return self.ready and (self.group is None or self.group.all_ready())


async def in_state(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    """A call to the stores (users, keys, failed logins) off the event loop."""
    pool = request.app[STATE].state_io
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


async def off_loop(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    """Blocking work that grows with its input (not inference) on the server's small I/O
    pool, so the event loop keeps answering (e.g. /health) meanwhile."""
    pool = request.app[STATE].io
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


ENGINE = web.AppKey("engine", Engine)
STATE = web.AppKey("state", ServerState)
USER: web.RequestKey[str | None] = web.RequestKey("user", str)  # None: anonymous
STARTED = web.RequestKey("started", float)
INFERENCE_MS = web.RequestKey("inference_ms", float)
STAGES: web.RequestKey[dict[str, float]] = web.RequestKey("stages", dict)  # detector → s
AUTHENTICATED = web.RequestKey("authenticated", bool)
CLIENT: web.RequestKey[str | None] = web.RequestKey("client", str)  # see client()
ADMITTED = web.RequestKey("admitted", bool)  # holds an admission slot, to give back
WARMING = web.AppKey("warming", asyncio.Task)
PUBLISHING = web.AppKey("publishing", asyncio.Task)
RECORDING = web.AppKey("recording", asyncio.Task)  # writes keys' last use
DIALECTS = web.AppKey("dialects", list[Dialect])  # in the order their routes were added
HG_KEY = re.compile(r"(/hg/)[^/]+", re.IGNORECASE)  # wherever it appears in a path
UNKNOWN_KEY_FIELD_LIMIT = 64 * 1024  # what is read of a form before its key is known
KEYLESS_BODY_WAIT = 5.0  # seconds a form with its key last waits for a reading permit
LOGIN_BODY_LIMIT = 4096


# -- errors ------------------------------------------------------------------------------
def dialect(request: web.Request) -> Dialect | None:
    """The dialect the request's path belongs to."""
    known: list[Dialect] = request.app[DIALECTS]
    return dialect_of(known, request.path)


def error_response(
    request: web.Request,
    status: int,
    message: str,
    headers: dict[str, str] | None = None,
    code: int | None = None,
) -> web.Response:
    """The error body of the request's dialect (`code`: a dialect's own error code)."""
    body = error_body(dialect(request), request.path, status, message, code)
    return web.json_response(body, status=status, headers=headers, dumps=dumps)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await _answer(request, handler)
    state = request.app[STATE]
    route = request.match_info.route.resource
    name = route.canonical if route is not None else "unknown"
    state.requests[(request.method, name, response.status)] += 1
    answered, spent = state.latency.get(name, (0, 0.0))
    state.latency[name] = (answered + 1, spent + time.perf_counter() - request[STARTED])
    # A refusal is work the server would not take; /ready's 503 while warming is not one.
    if response.status in (413, 429, 503) and request.path not in PUBLIC:
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


def safe_path(path: str) -> str:
    """A path fit for a log line: API keys in /hg/KEY masked, control characters escaped
    (so `%0a` cannot forge a line)."""
    masked = HG_KEY.sub(r"\1***", path)
    return masked.encode("unicode_escape", "backslashreplace").decode("ascii")


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
        for key, value in request.query.items():
            text.check(key, "a query parameter's name")
            text.check(value, f"query parameter {key!r}", multiline=True)
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
    opened = [d for d in request.app[DIALECTS] if d.name in config.keyless_dialects]
    return any(d.owns(request.path) for d in opened)


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
    return await in_state(request, state.users.session, user) == stamp


def client(request: web.Request) -> str | None:
    """The client's address: the connection's own, or behind --trusted-proxies the one
    the proxy names (see mlapi.edge)."""
    if CLIENT not in request:
        request[CLIENT] = edge.client_address(
            request.remote,
            request.headers.getall("X-Forwarded-For", ()),
            request.headers.getall("Forwarded", ()),
            request.app[STATE].config.trusted_proxies,
        )
    return request[CLIENT]


def own_host(request: web.Request) -> str:
    """This server's host and port as browsers name it: --public-url's, else the `Host`
    the request was sent to (checked by edge_middleware)."""
    public_url = request.app[STATE].config.public_url
    return urlsplit(public_url).netloc if public_url else request.host


def signed_in(request: web.Request) -> bool:
    """The request carries a console session and no key or token of its own."""
    return SESSION_COOKIE in request.cookies and _credentials(request) is None


def public(request: web.Request) -> bool:
    """A path anyone may ask for: health, login, and what a dialect declares (the
    console's page and its sign-in)."""
    path = request.path
    if path in PUBLIC:
        return True
    return any(
        path == p or (p.endswith("/") and len(p) > 1 and path.startswith(p))
        for d in request.app[DIALECTS]
        for p in d.public
    )


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Route first (unknown path: 404), then authenticate from headers, path or query.

    A dialect whose clients may send their key as a form field (DeepStack's `api_key`):
    without a key in the headers, its handler authenticates from the form (read_upload)."""
    route_error = request.match_info.http_exception
    if route_error is not None:
        raise route_error
    state = request.app[STATE]
    if public(request) or (request.path == "/metrics" and state.config.public_metrics):
        return await handler(request)
    if signed_in(request):
        request[USER] = (await console_session(request, state)).user
        request[AUTHENTICATED] = True
        return await handler(request)
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
    if request.method != "POST" or public(request):
        return await handler(request)
    state = request.app[STATE]
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


async def admit(request: web.Request) -> None:
    """A slot for this request, given back by admission_middleware on every path.

    Batch clients (HomeGallery sends 20-60 at once and never retries) wait their turn, in
    order, holding only their headers; 503 is for real overload: a full waiting line, or a
    turn that does not come within max_wait."""
    if not request.get(ADMITTED, False):
        await request.app[STATE].admit()
        request[ADMITTED] = True


def give_back_slot(request: web.Request) -> None:
    """Give back this request's admission slot while it waits on something that is not
    this server's work (a ZoneMinder portal's answers): only decoding and inference hold
    one. `admit` takes one again, in turn, before the next inference."""
    if request.get(ADMITTED, False):
        request[ADMITTED] = False
        request.app[STATE].release()


def declared_too_large(request: web.Request) -> bool:
    """The headers announce a body over the limit (413 before reading it)."""
    length = request.content_length
    return length is not None and length > request.app[STATE].config.max_body


def body_limit_message(request: web.Request) -> str:
    return f"request body is over the limit of {request.app[STATE].config.max_body} bytes"


async def refuse_large_expect(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue` with a body over the limit gets 413, not `100 Continue`."""
    if declared_too_large(request):
        message = body_limit_message(request)
        return error_response(request, 413, message, {"Connection": "close"})
    if request.headers.get("Expect", "").lower() != "100-continue":
        return error_response(request, 417, "only Expect: 100-continue is understood")
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0
    return None


# -- request bodies ----------------------------------------------------------------------
class Upload:
    """The image bytes and the fields of a request (query and form, form winning)."""

    def __init__(
        self,
        data: bytes | None,
        fields: dict[str, str],
        files: list[tuple[str, bytes]] | None = None,
    ) -> None:
        self.data, self.fields, self.files = data, fields, files or []

    @property
    def image(self) -> bytes:
        """The image, which read_upload(require_image=True) guarantees (else a 400)."""
        if not self.data:
            raise RequestError(400, "no image in the request")
        return self.data


Authorise = Callable[[dict[str, str]], Awaitable[None]]


async def _read_multipart(
    request: web.Request, config: ServerConfig, known: dict[str, str], authorise: Authorise | None
) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    """Form fields and (name, bytes) file parts, in memory, under caps on the body, the
    number of parts and the size of a field. `authorise` runs (with the fields so far)
    before the first file part is read when the key came before it; otherwise once the
    whole form is in, under a permit for reading a stranger's body (see keyless_body)."""
    fields: dict[str, str] = {}
    files: list[tuple[str, bytes]] = []
    total = parts = 0
    key_field = form_key(request)
    permitted = False  # holds a permit to read a stranger's body
    async with contextlib.AsyncExitStack() as permit:
        try:
            reader = await request.multipart()
            while (part := await reader.next()) is not None:
                parts += 1
                if parts > config.max_parts:
                    raise RequestError(413, f"more than {config.max_parts} parts in the form")
                if not isinstance(part, BodyPartReader):
                    raise RequestError(400, "nested multipart bodies are not supported")
                content_type = part.headers.get("Content-Type", "")
                is_file = part.filename is not None or content_type.startswith(
                    ("image/", "application/oct")
                )
                if is_file and authorise is not None:
                    if key_field in known or key_field in fields:
                        await authorise({**known, **fields})
                        authorise = None
                    elif not permitted:
                        await permit.enter_async_context(keyless_body(request))
                        permitted = True
                limit = config.max_body if is_file else config.max_field
                chunks = bytearray()
                while chunk := await part.read_chunk(1 << 16):
                    total += len(chunk)
                    if total > config.max_body:
                        raise web.HTTPRequestEntityTooLarge(
                            max_size=config.max_body, actual_size=total
                        )
                    if len(chunks) + len(chunk) > limit:
                        raise RequestError(413, f"form field {part.name!r} is over {limit} bytes")
                    chunks += chunk
                name = text.check(part.name or "", "a form field's name")
                if is_file:
                    files.append((name, bytes(chunks)))
                else:
                    fields[name] = chunks.decode(errors="replace")
        except (ValueError, AssertionError, LookupError, HttpProcessingError) as exc:
            # No or a wrong boundary, an unterminated body, an oversized part header, …
            raise RequestError(400, f"malformed multipart body ({exc.__class__.__name__})") from exc
        if authorise is not None:
            await authorise({**known, **fields})
    return fields, files


def form_key(request: web.Request) -> str:
    """The form field this request's dialect lets clients carry their key in."""
    owner = dialect(request)
    return (owner.form_key if owner else None) or "api_key"


@contextlib.asynccontextmanager
async def keyless_body(request: web.Request) -> AsyncIterator[None]:
    """A permit to read a form whose key comes after its image: its sender is not known
    until the whole body is in, so only max_keyless_bodies are read at once."""
    state = request.app[STATE]
    try:
        async with asyncio.timeout(KEYLESS_BODY_WAIT):
            await state.keyless_bodies.acquire()
    except TimeoutError:
        raise RequestError(
            503,
            f"too many uploads with {form_key(request)} after the image; "
            "send it first or in a header",
        ) from None
    try:
        yield
    finally:
        state.keyless_bodies.release()


def _form_fields(body: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=bool(body)))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError(400, "body is neither an image nor a urlencoded form") from exc


SMALL_JSON = 64 * 1024  # parsed on the event loop; bigger bodies on the I/O pool
# A \u escape of a lone surrogate or a control character (other than tab and line breaks):
# only a document with one can hold a string that is not valid text.
SUSPECT_ESCAPE = re.compile(
    rb"\\u(?:[dD][89a-fA-F]|00(?:0[0-8bBcCeEfF]|1[0-9a-fA-F]|7[fF]|[89][0-9a-fA-F]))"
)


def parse_json(raw: bytes) -> Any:
    """A JSON document whose every string is valid text; RequestError (400) otherwise.

    Nesting is bounded by the interpreter's recursion limit (RecursionError, about 1,000
    levels: no API here nests past 3); lone surrogates and control characters can only
    come from \\u escapes, so documents without one are not walked."""
    try:
        document = json.loads(raw)
    except RecursionError:
        raise RequestError(400, "JSON nested too deeply") from None
    except ValueError as exc:
        raise RequestError(400, "body is not valid JSON") from exc
    if SUSPECT_ESCAPE.search(raw):
        _check_strings(document)
    return document


def _check_strings(value: Any) -> None:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            text.check(item, "a string in the JSON body", multiline=True)
        elif isinstance(item, dict):
            stack += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            stack += item


async def json_object(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, read within the body-read timeout; 400 otherwise."""
    try:
        async with asyncio.timeout(request.app[STATE].config.read_timeout):
            raw = await request.read()
    except TimeoutError as exc:
        raise RequestError(408, "request body took too long to arrive") from exc
    body = parse_json(raw) if len(raw) <= SMALL_JSON else await off_loop(request, parse_json, raw)
    if not isinstance(body, dict):
        raise RequestError(400, "JSON body must be an object")
    return body


def check_fields(fields: dict[str, str]) -> dict[str, str]:
    """Every field name and value is valid text (see mlapi.text); 400 otherwise."""
    for key, value in fields.items():
        text.check(key, "a field's name")
        text.check(value, f"field {key!r}", multiline=True)
    return fields


async def _read_bounded(request: web.Request, limit: int) -> bytes:
    """The body, refused with 401 past `limit` bytes (its sender is not yet known)."""
    body = bytearray()
    while chunk := await request.content.read(1 << 16):
        body += chunk
        if len(body) > limit:
            raise AuthError("Missing Authorization Header")
    return bytes(body)


async def read_upload(
    request: web.Request,
    file_field: str = "file",
    require_image: bool = True,
    authorise: Authorise | None = None,
    fetch: bool = True,
) -> Upload:
    """The request's image and fields. `authorise` (for clients that send their key in the
    form) runs before any image is read and before any URL is fetched; the request then
    takes its admission slot."""
    state = request.app[STATE]
    fields = check_fields(dict(request.query))
    files: list[tuple[str, bytes]] = []
    data: bytes | None = None
    try:
        async with asyncio.timeout(state.config.read_timeout) as deadline:
            if authorise is not None:
                authorise = _then_admit(request, authorise, deadline)
            if request.content_type == "multipart/form-data":
                form_fields, files = await _read_multipart(request, state.config, fields, authorise)
                authorise = None
                fields.update(form_fields)
                named = [d for name, d in files if name == file_field]
                data = next(iter(named or [d for _, d in files]), None)
            elif request.content_type == "application/x-www-form-urlencoded":
                # curl --data-binary and urllib send raw images with this type by default.
                if authorise is None:
                    body = await request.read()
                else:  # the key may be in this form: read only a small one before knowing
                    body = await _read_bounded(request, UNKNOWN_KEY_FIELD_LIMIT)
                if sniff(body):
                    data = body
                else:
                    fields.update(_form_fields(body))
            elif request.content_type == "application/json":
                if authorise is not None:  # no client puts its key in a JSON body
                    await authorise(fields)
                    authorise = None
                document = await json_object(request)
                fields.update({k: str(v) for k, v in document.items()})
            else:
                if authorise is not None:  # a raw body has no form to carry a key
                    await authorise(fields)
                    authorise = None
                data = await request.read() or None
            if authorise is not None:
                await authorise(fields)
    except TimeoutError as exc:
        raise RequestError(408, "request body took too long to arrive") from exc
    check_fields(fields)
    if fetch and data is None and "url" in fields:
        data = await fetch_for(request, fields["url"])
    if require_image and not data and not files:
        raise RequestError(400, f"no image: send a multipart '{file_field}' field or a raw body")
    return Upload(data, fields, files)


async def fetch_for(request: web.Request, url: str) -> bytes:
    """The image at a client's `url`, where the server allows fetching (--allow-url-fetch),
    under the URL-fetch policy."""
    config = request.app[STATE].config
    if not config.allow_url_fetch:
        raise RequestError(400, "fetching a url is disabled on this server (--allow-url-fetch)")
    return await fetch_image(url, config.max_body, networks=config.url_networks)


def _then_admit(request: web.Request, authorise: Authorise, deadline: asyncio.Timeout) -> Authorise:
    """`authorise`, then a turn for the now known client, so strangers' bodies hold no
    slot. The wait for a turn is bounded by max_wait, and the read timeout starts again."""

    async def checked(fields: dict[str, str]) -> None:
        await authorise(fields)
        deadline.reschedule(None)
        await admit(request)
        timeout = request.app[STATE].config.read_timeout
        deadline.reschedule(asyncio.get_running_loop().time() + timeout)

    return checked


def split_options(fields: dict[str, str], allowed: set[str]) -> tuple[list[str], dict[str, Any]]:
    """`models=a,b` and `a.key=value` fields → (models, options); other fields refused."""
    models = [m.strip() for m in fields.get("models", "").split(",") if m.strip()]
    options: dict[str, dict[str, str]] = {}
    for key, value in fields.items():
        if key == "models" or key in allowed:
            continue
        model, dot, name = key.partition(".")
        if not dot:
            raise RequestError(400, f"unknown parameter {key!r}")
        options.setdefault(model, {})[name] = value
    return models, options


async def in_pool(request: web.Request, fn: Callable[..., T], *args: Any, image: bytes) -> T:
    """Run blocking engine work on `image` on the bounded inference pool; 503 when the
    queue is full. The work is priced by the image's pixels (read from its header, see
    images.pixel_cost), never by its bytes: a small PNG of 16 megapixels waits behind
    camera frames like any big photo."""
    state = request.app[STATE]
    if state.inflight >= state.capacity:
        raise RequestError(503, "server is busy; retry shortly")
    state.inflight += 1
    started = time.perf_counter()
    try:
        # Cheapest first: a camera's small frame does not wait behind big photos.
        return await state.engine.run_async(fn, *args, cost=pixel_cost(image))
    finally:
        state.inflight -= 1
        request[INFERENCE_MS] = (time.perf_counter() - started) * 1000


async def run_detection(
    request: web.Request, data: bytes, models: list[str] | None, options: dict[str, Any] | None
) -> Result:
    engine = request.app[ENGINE]
    plan = engine.make_plan(models, options)  # a bad detector or option: 400 before any work
    result = await in_pool(request, engine.run_here, data, plan, image=data)
    request[STAGES] = dict(result.stages)
    return result


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


# -- health and meta ---------------------------------------------------------------------
@openapi.operation("liveness and uptime", auth=False, tag="meta")
async def health(request: web.Request) -> web.Response:
    uptime = int((time.monotonic() - request.app[STATE].started) * 1000)
    return web.json_response({"health": "OK", "uptime": uptime})


@openapi.operation("200 once the models are loaded, else 503", auth=False, tag="meta")
async def ready(request: web.Request) -> web.Response:
    state = request.app[STATE]
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
    state = request.app[STATE]
    processes = state.group.size if state.group else 1
    return web.Response(text=metrics.render(state.whole(), processes), content_type="text/plain")


@openapi.operation("mlapi 2.x health check", auth=False, tag="mlapi")
async def mlapi_health(request: web.Request) -> web.Response:
    return web.json_response("ok")


@openapi.operation("installed detectors and their options", tag="native")
async def list_models(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    rows = [
        {
            "name": name,
            "task": cls.task,
            "description": cls.description,
            "needs": list(cls.needs),
            "options": {k: v for k, v in cls.Options().as_dict().items()},
        }
        for name, cls in sorted(engine.registry.items())
    ]
    return json_text({"version": __version__, "models": rows})


@openapi.operation("this document", auth=False, tag="meta")
async def openapi_document(request: web.Request) -> web.Response:
    return json_text(openapi.document(request.app))


# -- native and mlapi dialects -----------------------------------------------------------
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
    state = request.app[STATE]
    user, password = await read_credentials(request)
    user, stamp = await check_password(request, user, password)
    token = state.tokens.issue(user, stamp)
    return web.json_response({"access_token": token, "expires": state.tokens.lifetime})


async def read_credentials(request: web.Request) -> tuple[str, str]:
    """(username, password) from a small JSON body; 400, 408 or 413 otherwise."""
    state = request.app[STATE]
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


class TooManyLogins(MlapiError):
    status = 429

    def __init__(self, wait: int) -> None:
        super().__init__("too many failed logins; try again later")
        self.retry_after = wait


async def check_password(request: web.Request, user: str, password: str) -> tuple[str, str]:
    """(user, their session stamp) when the password is right, under the login limiter
    (per user and address, shared by every process); AuthError or 429 otherwise."""
    state = request.app[STATE]
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
    stamp = await in_state(request, state.users.session, user)
    return user, stamp or ""


# -- the application ---------------------------------------------------------------------
def add_post(app: web.Application, path: str, handler: Handler) -> None:
    """A POST route whose `Expect: 100-continue` is answered after the size check."""
    app.router.add_post(path, handler, expect_handler=refuse_large_expect)


def core_app(
    engine: Engine, stores: Stores, config: ServerConfig | None = None, group: Group | None = None
) -> web.Application:
    """The application with its middleware, state, warm-up and the core routes (health,
    readiness, metrics, login, models, OpenAPI); `mlapi.app` adds the dialect modules.
    `group`: the processes this one serves with (`serve --processes`)."""
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
    app[ENGINE] = engine
    app[DIALECTS] = []
    app[STATE] = ServerState(engine, stores, config, group)
    if config.uploads:
        config.uploads.mkdir(parents=True, exist_ok=True)
    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
    app.router.add_get("/api/v1/health", mlapi_health)
    app.router.add_get("/metrics", metrics_text)
    add_post(app, "/api/v1/login", login)
    app.router.add_get("/api/v1/models", list_models)
    app.router.add_get("/api/v1/openapi.json", openapi_document)

    async def warm() -> None:
        state = app[STATE]
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
            group.publish(app[STATE].snapshot())
            await asyncio.sleep(PUBLISH_SECONDS)

    async def record_key_uses() -> None:
        state = app[STATE]
        while True:
            await asyncio.sleep(KEY_USE_FLUSH)
            try:
                await asyncio.get_running_loop().run_in_executor(
                    state.state_io, state.flush_key_uses
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
            app[STATE].flush_key_uses()
        if group:
            group.set_ready(False)
            group.publish(app[STATE].snapshot())
        app[STATE].io.shutdown(wait=False)
        app[STATE].state_io.shutdown(wait=False)

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


class QuietBadRequests(logging.Filter):
    """aiohttp logs a full traceback for every unparsable request (a request line of `*`,
    an oversized header) after answering it 400: one line says enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = (
                "bad request (%s): %s",
                (
                    exc.__class__.__name__,
                    safe_path(str(exc.message)[:200]),
                ),
            )
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class AccessLog(AbstractAccessLogger):
    """One line per request: address, user, request (API keys in /hg/KEY/… masked), status."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = safe_path(request.path)
        user = request.get(USER) or "-"
        try:
            address = client(request)  # type: ignore[arg-type]
        except (AttributeError, RuntimeError):  # a request that never reached the app
            address = request.remote
        self.logger.info(
            '%s %s "%s %s" %s %.1fms',
            address,
            user,
            request.method,
            path,
            response.status,
            time * 1000,
        )
