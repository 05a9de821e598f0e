"""mlapi's own API: POST /api/v1/detect, answered in any of the CLI's --format renderers."""

from __future__ import annotations

from aiohttp import web

from mlapi.openapi import IMAGE_BODY, operation, query
from mlapi.render import FORMATS
from mlapi.web.kit import (
    Dialect,
    RequestError,
    Routes,
    json_text,
    read_upload,
    run_detection,
    split_options,
)


@operation(
    "detect with any detectors; canonical JSON (see result.schema.json)",
    tag="native",
    body=IMAGE_BODY,
    params=[
        query("models", "comma-separated detector names (default objects)"),
        query("format", "answer shape", list(FORMATS)),
        query("MODEL.KEY", "a detector option, e.g. objects.confidence=0.5"),
    ],
)
async def detect(request: web.Request) -> web.Response:
    upload = await read_upload(request)
    models, options = split_options(upload.fields, {"format", "url"})
    fmt = upload.fields.get("format", "native")
    if fmt not in FORMATS:
        raise RequestError(400, f"format must be one of {', '.join(FORMATS)}")
    result = await run_detection(request, upload.image, models or None, options)
    return json_text(FORMATS[fmt](result))


def add_routes(routes: Routes) -> None:
    routes.post("/api/v1/detect", detect)


DIALECT = Dialect("native", add_routes)
