"""HomeGallery api-server shapes: /objects and /faces answers for a raw JPEG body."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from mlapi.openapi import RAW_JPEG, operation
from mlapi.result import Result
from mlapi.server import RequestError, add_post, json_text, read_upload, run_detection


def _envelope(body: bytes, model: str, result: Result) -> dict[str, Any]:
    return {
        "srcSha1sum": hashlib.sha1(body).hexdigest(),
        "model": model,
        "created": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "width": result.width,
        "height": result.height,
    }


def embeddings(body: bytes, result: Result) -> dict[str, Any]:
    doc = _envelope(body, "mobilenet_v2", result)
    del doc["width"], doc["height"]  # the client's embeddings answer has no size
    doc["version"] = "1.4_224"
    doc["data"] = [round(v, 6) for v in result.detections[0].embedding]
    return doc


def objects(body: bytes, result: Result) -> dict[str, Any]:
    doc = _envelope(body, "nanodet", result)
    doc["version"] = "plus-m-416"
    doc["data"] = [
        {
            "bbox": [d.box[0], d.box[1], d.box[2] - d.box[0], d.box[3] - d.box[1]],
            "class": d.label,
            "score": round(d.confidence, 4),
        }
        for d in result.detections
    ]
    return doc


def faces(body: bytes, result: Result) -> dict[str, Any]:
    doc = _envelope(body, "blazeface+faceres+dlib", result)
    data = []
    for d in result.detections:
        x1, y1, x2, y2 = d.box
        face: dict[str, Any] = {
            "alignedRect": {
                "box": {"x": x1, "y": y1, "width": x2 - x1, "height": y2 - y1},
                "score": round(d.confidence, 4),
            },
            "landmarks": {"positions": [{"x": x, "y": y} for x, y in d.keypoints]},
        }
        attrs = d.attributes or {}
        if "gender" in attrs:
            face["gender"] = attrs["gender"]["label"]
            face["genderProbability"] = round(attrs["gender"]["confidence"], 4)
        if "age" in attrs:
            face["age"] = round(attrs["age"], 1)
        if "expressions" in attrs:
            face["expressions"] = {k: round(v, 4) for k, v in attrs["expressions"].items()}
        if d.embedding:
            face["descriptor"] = [round(v, 6) for v in d.embedding]
        data.append(face)
    doc["data"] = data
    return doc


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


def add_routes(app: web.Application) -> None:
    for prefix in ("", "/hg/{key}"):  # the prefixed form carries an API key in the base URL
        add_post(app, f"{prefix}/objects", post_objects)
        add_post(app, f"{prefix}/faces", post_faces)
        add_post(app, f"{prefix}/embeddings", post_embeddings)
