"""DOODS (`GET /detectors`, `POST /detect`), for Home Assistant's `doods` integration.

The key comes in the `doods-auth-key` header (an mlapi API key). `/detect` takes JSON
`{"id", "detector_name", "data": <base64 image>, "detect": {"person": 40, "*": 50}}`
(thresholds in percent; `*` is every other label) and answers `{"id", "detections":
[{"top", "left", "bottom", "right"} as fractions of the image, "label", "confidence" in
percent], "duration"}`, with no `error` key on success: Home Assistant treats any `error`
key as a failure. Errors are `{"error": "…"}` with a 4xx.
"""

from __future__ import annotations

import base64
import binascii
import time
from typing import Any

from aiohttp import web

from mlapi.detectors.coco import COCO_LABELS
from mlapi.dialects.doods import render
from mlapi.openapi import body, operation
from mlapi.web.kit import (
    ENGINE,
    Dialect,
    RequestError,
    Routes,
    json_object,
    json_text,
    plain_error,
    run_detection,
)

DEFAULT = "default"  # DOODS's name for the default detector: mlapi's `objects`


def _object_detectors(request: web.Request) -> dict[str, str]:
    """DOODS detector name → mlapi detector."""
    registry = request.app[ENGINE].registry
    names = {n: n for n, cls in registry.items() if cls.task == "objects"}
    return {DEFAULT: "objects", **names} if "objects" in names else names


@operation("DOODS: the object detectors and their labels", tag="doods")
async def detectors(request: web.Request) -> web.Response:
    registry = request.app[ENGINE].registry
    found = []
    for name, detector in _object_detectors(request).items():
        cls = registry[detector]
        side = cls.needed_side(None) or 0
        labels = list(getattr(cls, "labels", ()) or COCO_LABELS)
        found.append(
            {"name": name, "type": "mlapi", "model": detector, "labels": labels,
             "width": side, "height": side}
        )  # fmt: skip
    return json_text({"detectors": found})


def _thresholds(raw: Any) -> dict[str, float]:
    if raw in (None, ""):
        return {}
    if not isinstance(raw, dict):
        raise RequestError(400, '"detect" must be an object of label: percent')
    out = {}
    for label, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 100:
            raise RequestError(400, f"threshold for {label!r} must be a percent from 0 to 100")
        out[str(label)] = float(value)
    return out


@operation(
    "DOODS: detect in a base64 image with per-label thresholds in percent",
    tag="doods",
    body=body(
        "application/json",
        {
            "id": {"type": "string"},
            "detector_name": {"type": "string"},
            "data": {"type": "string", "format": "byte"},
            "detect": {"type": "object", "additionalProperties": {"type": "number"}},
        },
        ["data"],
    ),
)
async def detect(request: web.Request) -> web.Response:
    started = time.perf_counter()
    body = await json_object(request)
    name = str(body.get("detector_name") or DEFAULT)
    detectors = _object_detectors(request)
    if name not in detectors:
        raise RequestError(400, f"no detector named {name!r} (have: {', '.join(detectors)})")
    try:
        data = base64.b64decode(str(body.get("data", "")), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, '"data" must be a base64-encoded image') from exc
    if not data:
        raise RequestError(400, 'no image: "data" is empty')
    wanted = _thresholds(body.get("detect"))
    detector = detectors[name]
    # Ask the model for the lowest threshold wanted, then filter per label.
    floor = min(wanted.values(), default=None)
    options = {detector: {"confidence": floor / 100}} if floor is not None else None
    result = await run_detection(request, data, [detector], options)
    duration = round(time.perf_counter() - started, 4)
    return json_text(render.document(str(body.get("id", "")), result, wanted, duration))


def add_routes(routes: Routes) -> None:
    routes.get("/detectors", detectors)
    routes.post("/detect", detect)


DIALECT = Dialect("doods", add_routes, error_body=plain_error)
