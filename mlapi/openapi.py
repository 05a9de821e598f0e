"""The OpenAPI document for `mlapi serve` (served at /api/v1/openapi.json), generated from
the routes the app registered: each handler carries its operation (`@operation(...)`), so
a dialect module documents its own routes and nothing here lists them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from mlapi import __version__

F = TypeVar("F", bound=Callable[..., Any])
_ATTR = "__openapi__"

IMAGE_BODY = {
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "properties": {"file": {"type": "string", "format": "binary"}},
            }
        },
        "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
        "image/png": {"schema": {"type": "string", "format": "binary"}},
    }
}
RAW_JPEG = {
    "required": True,
    "content": {"image/jpeg": {"schema": {"type": "string", "format": "binary"}}},
}
_ERRORS = {
    "400": {"description": "bad input: not an image, bad option, unknown parameter"},
    "401": {"description": "missing or invalid credentials"},
    "409": {"description": "a detector's model is not pulled (the message names the command)"},
    "413": {"description": "body or image too large"},
    "503": {"description": "busy (see Retry-After)"},
}


def _op(
    summary: str,
    *,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    auth: bool = True,
    tag: str = "native",
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "responses": {"200": {"description": "OK"}, **(_ERRORS if body else {})},
    }
    if body:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    if not auth:
        op["security"] = []
    return op


def body(
    media: str, properties: dict[str, Any], required: list[str] | None = None
) -> dict[str, Any]:
    """A required request body of one media type: an object with these properties."""
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    return {"required": True, "content": {media: {"schema": schema}}}


BINARY = {"type": "string", "format": "binary"}
COMPREFACE_FILE = body("multipart/form-data", {"file": BINARY})


def query(name: str, description: str, enum: list[str] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if enum:
        schema["enum"] = enum
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


# Path parameters, described once; a `key` in the path is the credential itself.
_PATH_PARAMS = {
    "key": "an API key (for clients that cannot send headers)",
    "model": "a detector name, or `list` for the names",
    "name": "a known plate's name",
    "subject": "a subject (person) name",
}


def operation(
    summary: str,
    *,
    tag: str,
    body: dict[str, Any] | None = None,
    params: list[dict[str, Any]] | None = None,
    auth: bool = True,
) -> Callable[[F], F]:
    """Document a handler; every route it is registered on shows this operation."""

    def mark(handler: F) -> F:
        setattr(handler, _ATTR, _op(summary, body=body, params=params, auth=auth, tag=tag))
        return handler

    return mark


def document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI 3.1 document of every route registered on `app`."""
    paths: dict[str, Any] = {}
    for route in app.router.routes():
        if route.method in ("HEAD", "*"):  # aiohttp adds HEAD beside each GET
            continue
        path = route.resource.canonical if route.resource else ""
        found = getattr(route.handler, _ATTR, None)
        op: dict[str, Any] = copy.deepcopy(found) if found else {"summary": "undocumented"}
        for name in (part[1:-1] for part in path.split("/") if part.startswith("{")):
            op.setdefault("parameters", []).append(
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": _PATH_PARAMS.get(name, name),
                }
            )
            if name == "key":
                op["security"] = []
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "mlapi", "version": __version__},
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            }
        },
        "security": [{"bearer": []}, {"apiKey": []}],
        "paths": dict(sorted(paths.items())),
    }
