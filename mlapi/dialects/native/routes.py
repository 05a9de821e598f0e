"""mlapi's own API: POST /api/v1/detect, answered in any of the CLI's --format renderers;
the known plates (GET, POST /api/v1/plates, DELETE /api/v1/plates/{name})."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mlapi.dialects.native import faces
from mlapi.openapi import IMAGE_BODY, body, operation, query
from mlapi.render import FORMATS
from mlapi.stores import KnownPlate
from mlapi.web.kit import (
    SERVER,
    Dialect,
    RequestError,
    Routes,
    in_state,
    json_object,
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
    models, options = split_options(upload.fields, {"format", "url", "source"})
    fmt = upload.fields.get("format", "native")
    if fmt not in FORMATS:
        raise RequestError(400, f"format must be one of {', '.join(FORMATS)}")
    source = upload.fields.get("source", "")
    result = await run_detection(request, upload.image, models or None, options, source)
    return json_text(FORMATS[fmt](result))


# -- known plates ------------------------------------------------------------------------
def shown(known: KnownPlate) -> dict[str, str]:
    """A known plate as the API gives it: {"name", "plate"} or {"name", "pattern"}."""
    if known.plate:
        return {"name": known.name, "plate": known.plate}
    return {"name": known.name, "pattern": known.pattern}


@operation("the known plates: {plates: [{name, plate} or {name, pattern}]}", tag="native")
async def plates_list(request: web.Request) -> web.Response:
    known = await in_state(request, request.app[SERVER].plates.known)
    return json_text({"plates": [shown(k) for k in known]})


PLATE_FIELDS = {"name", "plate", "pattern"}
PLATE_BODY = body(
    "application/json",
    {
        "name": {"type": "string"},
        "plate": {"type": "string", "description": "e.g. AB-123 CD"},
        "pattern": {"type": "string", "description": "e.g. FLEET[0-9]{3}", "maxLength": 200},
    },
    ["name"],
)


@operation(
    "name a plate, or every plate a regular expression matches in full (on its upper-case "
    "letters and digits); a detected plate within one edit of it, or matched, carries "
    "the name",
    tag="native",
    body=PLATE_BODY,
)
async def plates_add(request: web.Request) -> web.Response:
    return json_text(await add_plate(request))


async def add_plate(request: web.Request) -> dict[str, str]:
    """The known plate a request's {name, plate} or {name, pattern} adds, as shown (this
    API's and the console's): each refusal a 4xx in words."""
    document: dict[str, Any] = await json_object(request)
    stray = sorted(set(document) - PLATE_FIELDS)
    if stray:
        raise RequestError(400, f"unknown field {', '.join(stray)} (allowed: name, plate, pattern)")
    if not all(isinstance(v, str) for v in document.values()):
        raise RequestError(400, "name, plate and pattern are strings")
    name, plate, pattern = (document.get(f, "") for f in ("name", "plate", "pattern"))
    plates = request.app[SERVER].plates
    return shown(await in_state(request, plates.add, name, plate, pattern))


@operation("forget a name's known plates and patterns: {removed: N}; 404 if none", tag="native")
async def plates_remove(request: web.Request) -> web.Response:
    plates = request.app[SERVER].plates
    removed = await in_state(request, plates.remove, request.match_info["name"])
    return json_text({"removed": removed})


def add_routes(routes: Routes) -> None:
    routes.post("/api/v1/detect", detect)
    faces.add_routes(routes)
    routes.get("/api/v1/plates", plates_list)
    routes.post("/api/v1/plates", plates_add)
    routes.delete("/api/v1/plates/{name}", plates_remove)


DIALECT = Dialect("native", add_routes)
