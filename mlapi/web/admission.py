"""Admission as handlers see it: a slot for the request, given back while it waits on
another server; bodies over the limit refused from their headers."""

from __future__ import annotations

from typing import TypeVar

from aiohttp import web

from mlapi.web.answers import (
    error_response,
)
from mlapi.web.state import (
    ADMITTED,
    SERVER,
)

T = TypeVar("T")


async def admit(request: web.Request) -> None:
    """A slot for this request, given back by admission_middleware on every path.

    Batch clients (HomeGallery sends 20-60 at once and never retries) wait their turn, in
    order, holding only their headers; 503 is for real overload: a full waiting line, or a
    turn that does not come within max_wait."""
    if not request.get(ADMITTED, False):
        await request.app[SERVER].admit()
        request[ADMITTED] = True


def give_back_slot(request: web.Request) -> None:
    """Give back this request's admission slot while it waits on something that is not
    this server's work (a ZoneMinder portal's answers): only decoding and inference hold
    one. `admit` takes one again, in turn, before the next inference."""
    if request.get(ADMITTED, False):
        request[ADMITTED] = False
        request.app[SERVER].release()


def declared_too_large(request: web.Request) -> bool:
    """The headers announce a body over the limit (413 before reading it)."""
    length = request.content_length
    return length is not None and length > request.app[SERVER].config.max_body


def body_limit_message(request: web.Request) -> str:
    return f"request body is over the limit of {request.app[SERVER].config.max_body} bytes"


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
