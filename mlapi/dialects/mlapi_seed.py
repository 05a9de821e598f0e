"""The seed mlapi's route, `POST /api/v1/detect/object` (answers: mlapi.render.mlapi_seed)."""

from __future__ import annotations

import uuid

from aiohttp import web

from mlapi.dialect import Dialect
from mlapi.images import sniff
from mlapi.openapi import IMAGE_BODY, operation, query
from mlapi.render.mlapi_seed import render, render_zm_detect
from mlapi.server import (
    ENGINE,
    STATE,
    RequestError,
    Upload,
    add_post,
    json_text,
    read_upload,
    run_detection,
)


# -- routes ------------------------------------------------------------------------------
@operation(
    "the seed mlapi's detection array",
    tag="mlapi",
    body=IMAGE_BODY,
    params=[
        query("type", "what to detect", ["object", "face"]),
        query("gender", "add gender to faces", ["true", "false"]),
        query("delete", "do not keep the upload", ["true", "false"]),
        query("response_format", "zm_detect 6.x's shape", ["zm_detect"]),
    ],
)
async def detect_object(request: web.Request) -> web.Response:
    """The seed's POST /api/v1/detect/object?type=object|face[&gender=true][&delete=true]."""
    upload = await read_upload(request)
    kind = upload.fields.get("type", "object")
    gender = upload.fields.get("gender", "false").lower() == "true"
    if kind not in ("object", "face"):
        raise RequestError(400, f"unknown type {kind!r}: use object or face")
    if kind == "object":
        models = ["objects"]
    elif gender:
        if "genderage" not in request.app[ENGINE].registry:
            raise RequestError(400, "gender detection is not installed on this server")
        models = ["genderage"]
    else:
        models = ["faces"]
    response_format = upload.fields.get("response_format", "")
    if response_format not in ("", "zm_detect"):
        raise RequestError(400, "response_format must be zm_detect or left out")
    result = await run_detection(request, upload.image, models, None)
    _keep_upload(request, upload)
    if response_format == "zm_detect":
        return json_text(render_zm_detect(result))
    return json_text(render(result))


def _keep_upload(request: web.Request, upload: Upload) -> None:
    """Store the image only when the server was started with an uploads directory."""
    folder = request.app[STATE].config.uploads
    if folder is None or upload.fields.get("delete", "false").lower() == "true":
        return
    suffix = {"jpeg": ".jpg"}.get(sniff(upload.data) or "", f".{sniff(upload.data)}")  # type: ignore[arg-type]
    (folder / f"{uuid.uuid4().hex}{suffix}").write_bytes(upload.data)  # type: ignore[arg-type]


def add_routes(app: web.Application) -> None:
    add_post(app, "/api/v1/detect/object", detect_object)


DIALECT = Dialect("mlapi", ("/api/v1/detect/object",), add_routes)
