"""HomeGallery api-server shapes: /objects and /faces answers for a raw JPEG body."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from mlapi.dialects.homegallery.render import embeddings, faces, objects
from mlapi.openapi import RAW_JPEG, operation
from mlapi.result import Result
from mlapi.web.kit import (
    Dialect,
    RequestError,
    Routes,
    json_text,
    plain_error,
    read_upload,
    run_detection,
)

# -- routes ------------------------------------------------------------------------------
FACE_MODELS = ["faces", "genderage", "emotion", "faceprint"]
# HomeGallery compares vectors on the scales its own server gave: raw dlib-scale descriptors
# (distance under 0.55 = the same person) and raw image features (its similarity hash).
FACE_OPTIONS = {"faceprint": {"normalise": False}}
EMBEDDING_OPTIONS = {"embeddings": {"normalise": False}}


async def _answer(
    request: web.Request,
    models: list[str],
    options: dict[str, dict[str, Any]] | None,
    render: Callable[[bytes, Result], dict[str, Any]],
) -> web.Response:
    """HomeGallery posts one raw JPEG body and reads its own answer shape."""
    if request.content_type not in ("image/jpeg", "image/jpg", "application/octet-stream"):
        raise RequestError(415, f"expected Content-Type image/jpeg, got {request.content_type}")
    body = await read_upload(request)
    result = await run_detection(request, body.image, models, options)
    return json_text(render(body.image, result))


@operation("HomeGallery objects", tag="homegallery", body=RAW_JPEG)
async def post_objects(request: web.Request) -> web.Response:
    return await _answer(request, ["objects"], None, objects)


@operation("HomeGallery faces", tag="homegallery", body=RAW_JPEG)
async def post_faces(request: web.Request) -> web.Response:
    return await _answer(request, FACE_MODELS, FACE_OPTIONS, faces)


@operation("HomeGallery image embedding", tag="homegallery", body=RAW_JPEG)
async def post_embeddings(request: web.Request) -> web.Response:
    return await _answer(request, ["embeddings"], EMBEDDING_OPTIONS, embeddings)


def add_routes(routes: Routes) -> None:
    for prefix in ("", "/hg/{key}"):  # the prefixed form carries an API key in the base URL
        routes.post(f"{prefix}/objects", post_objects)
        routes.post(f"{prefix}/faces", post_faces)
        routes.post(f"{prefix}/embeddings", post_embeddings)


DIALECT = Dialect("homegallery", add_routes, error_body=plain_error)
