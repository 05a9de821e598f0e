"""Request bodies: forms, raw images and JSON, read under caps on size, parts and time, with
the key checked before a stranger's image is read."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from mlapi import text
from mlapi.config import ServerConfig
from mlapi.errors import AuthError, RequestError
from mlapi.fetch import fetch_image
from mlapi.images import sniff
from mlapi.web.admission import (
    admit,
)
from mlapi.web.answers import (
    dialect,
)
from mlapi.web.state import (
    SERVER,
    off_loop,
)

T = TypeVar("T")
KEYLESS_BODY_WAIT = 5.0  # seconds a form with its key last waits for a reading permit
UNKNOWN_KEY_FIELD_LIMIT = 64 * 1024  # what is read of a form before its key is known


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
    state = request.app[SERVER]
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
        async with asyncio.timeout(request.app[SERVER].config.read_timeout):
            raw = await request.read()
    except TimeoutError as exc:
        raise RequestError(408, "request body took too long to arrive") from exc
    body = parse_json(raw) if len(raw) <= SMALL_JSON else await off_loop(request, parse_json, raw)
    if not isinstance(body, dict):
        raise RequestError(400, "JSON body must be an object")
    return body


def check_fields(fields: Mapping[str, str]) -> None:
    """Every field name and value is valid text (see mlapi.text); 400 otherwise. The query
    is checked so for every request at the edge (edge_middleware), each repeated key too."""
    for key, value in fields.items():
        text.check(key, "a field's name")
        text.check(value, f"field {key!r}", multiline=True)


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
    state = request.app[SERVER]
    fields = dict(request.query)  # valid text: checked at the edge
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
    config = request.app[SERVER].config
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
        timeout = request.app[SERVER].config.read_timeout
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


ANY_OFFSET = 10**9  # more than any page's offset can be (whole_number reads 9 digits)


def page_param(name: str, default: int, most: int, what: str) -> dict[str, Any]:
    """The OpenAPI entry of a query parameter whole_number reads."""
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": what,
        "schema": {"type": "integer", "minimum": 0, "maximum": most, "default": default},
    }


def whole_number(request: web.Request, name: str, default: int, most: int) -> int:
    """A query parameter that is a whole number from 0 (default `default`, cut to `most`);
    anything else a 400 that says so."""
    raw = request.query.get(name, "")
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        raise RequestError(400, f"{name} must be a whole number from 0, got {raw[:20]!r}")
    return min(int(raw), most)
