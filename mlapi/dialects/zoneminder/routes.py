"""ZoneMinder's pyzm gateway (`POST /api/v1/infer`, zmeventnotification 7.x).

pyzm logs in at `{gateway}/login` (mlapi's `/api/v1/login`), then sends one model per
request: multipart `type` (`object`, `face`, `alpr`), `name` (its own model name, only
echoed back), `min_confidence`, and a PNG `image`, or in URL mode a `url` (+ `zm_auth`,
`verify_ssl`) for the server to fetch from ZoneMinder. Answers are
`{"detections": [{"label", "confidence", "box": [x1, y1, x2, y2], "type", "model_name"}],
"error": null}` (a face's label is the person's name, a plate's its letters and digits);
a model the server cannot run, or a frame it cannot fetch, is 200 with `detections: []`
and the reason in `error` (pyzm then skips that model).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from mlapi.dialects.zoneminder import render
from mlapi.errors import MlapiError
from mlapi.fetch import fetch_image
from mlapi.openapi import BINARY, body, operation
from mlapi.web.kit import (
    SERVER,
    Dialect,
    RequestError,
    Routes,
    json_text,
    read_upload,
    run_detection,
)

# pyzm's model type → (detector to run, detector whose `confidence` min_confidence sets)
TYPES = {
    "object": ("objects", "objects"),
    "face": ("recognize", "faces"),
    "alpr": ("plates", "plates"),
}


def _answer(detections: list[dict[str, Any]], error: str | None = None) -> web.Response:
    return json_text(render.document(detections, error))


@operation(
    "ZoneMinder pyzm gateway: one model (type=object|face|alpr) on one frame "
    "(multipart image, or url + zm_auth)",
    tag="zoneminder",
    body=body(
        "multipart/form-data",
        {
            "type": {"type": "string", "enum": list(TYPES)},
            "name": {"type": "string"},
            "min_confidence": {"type": "number"},
            "image": BINARY,
            "url": {"type": "string"},
            "zm_auth": {"type": "string"},
            "verify_ssl": {"type": "string"},
        },
        ["type"],
    ),
)
async def infer(request: web.Request) -> web.Response:
    state = request.app[SERVER]
    upload = await read_upload(request, file_field="image", require_image=False, fetch=False)
    kind, name = upload.fields.get("type", ""), upload.fields.get("name", "")
    if kind not in TYPES:
        have = ", ".join(TYPES)
        return _answer([], f"no model for type={kind!r} on this server (have: {have})")
    detector, thresholded = TYPES[kind]
    raw = upload.fields.get("min_confidence", "")
    options = {thresholded: {"confidence": raw}} if raw else {}
    data = upload.data
    if data is None and upload.fields.get("url"):
        if not state.config.allow_url_fetch:
            return _answer([], "URL mode is disabled on this server (--allow-url-fetch)")
        url, auth = upload.fields["url"], upload.fields.get("zm_auth", "")
        if auth:
            url = f"{url}{'&' if '?' in url else '?'}{auth}"
        try:
            data = await fetch_image(
                url,
                state.config.max_body,
                networks=state.config.url_networks,
                verify_ssl=upload.fields.get("verify_ssl", "1") not in ("0", "false", ""),
            )
        except MlapiError as exc:  # pyzm skips the model; the reason, not the credentials
            return _answer([], f"fetch failed: {exc.message.split('?')[0]}")
    if not data:
        raise RequestError(400, "no image: send a multipart 'image' or a 'url'")
    result = await run_detection(request, data, [detector], options)
    return json_text(render.detections(result, kind, name or detector))


def add_routes(routes: Routes) -> None:
    routes.post("/api/v1/infer", infer)


DIALECT = Dialect("zoneminder", add_routes)
