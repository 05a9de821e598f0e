"""Who may reach a console route, documented so: anyone (the page, sign-in) or only a
signed-in browser (the middleware enforces it; these say it in the OpenAPI document)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from mlapi.errors import AuthError
from mlapi.openapi import operation
from mlapi.web.kit import (
    USER,
    Handler,
    signed_in,
)


def user_of(request: web.Request) -> str:
    """The signed-in user; 401 for a key, a token or nobody (the console API is the page's)."""
    user: str | None = request.get(USER)
    if not signed_in(request) or user is None:
        raise AuthError("sign in to the console first")
    return user


def anyone(summary: str) -> Callable[[Handler], Handler]:
    return operation(summary, tag="console", auth=False)


def signed_in_only(
    summary: str,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> Callable[[Handler], Handler]:
    """Documents a handler only a signed-in browser reaches: its route is registered with
    access "session", which the middleware enforces (a key or token gets 401)."""
    described = f"{summary} (console session)"
    return operation(described, tag="console", auth=False, params=params, body=body)
