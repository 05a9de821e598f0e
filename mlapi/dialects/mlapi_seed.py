"""The seed mlapi's route, `POST /api/v1/detect/object` (answers: mlapi.render.mlapi_seed)."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Any

from aiohttp import web

from mlapi.dialect import Dialect
from mlapi.images import sniff
from mlapi.openapi import IMAGE_BODY, operation, query
from mlapi.render.mlapi_seed import render, render_zm_detect
from mlapi.result import Detection, Result, clip_box
from mlapi.server import (
    ENGINE,
    STATE,
    RequestError,
    Upload,
    add_post,
    fetch_for,
    json_object,
    json_text,
    off_loop,
    read_upload,
    run_detection,
)
from mlapi.zoneminder import EVENT_ID, FrameOptions, Portal, ZoneMinder

# -- routes ------------------------------------------------------------------------------
ZONEMINDER = web.AppKey("zoneminder", ZoneMinder)


@operation(
    "the seed mlapi's detection array; zm_detect's event path (a JSON body with `stream`, "
    "an event id, read from the server's ZoneMinder portal); type=face_names lists people",
    tag="mlapi",
    body=IMAGE_BODY,
    params=[
        query("type", "what to detect", ["object", "face", "face_names"]),
        query("gender", "add gender to faces", ["true", "false"]),
        query("delete", "do not keep the upload", ["true", "false"]),
        query("response_format", "zm_detect 6.x's shape", ["zm_detect"]),
    ],
)
async def detect_object(request: web.Request) -> web.Response:
    """The seed's POST /api/v1/detect/object?type=object|face|face_names[&gender=true]
    [&delete=true][&response_format=zm_detect]."""
    if request.content_type == "application/json":  # zm_detect's event path, or nothing
        fields: dict[str, str] = dict(request.query)
        document = await json_object(request)
        upload = None
    else:
        upload = await read_upload(request, require_image=False)
        fields, document = upload.fields, {}
    kind = fields.get("type", "object")
    if kind == "face_names":  # mlapi 2.x: the known people, for zm_detect 5.x and 6.0
        names = await off_loop(request, request.app[ENGINE].runtime.gallery.names)
        return json_text({"names": names})
    if kind not in ("object", "face"):
        raise RequestError(400, f"unknown type {kind!r}: use object, face or face_names")
    models = _models(request, kind, fields.get("gender", "false").lower() == "true")
    response_format = fields.get("response_format", "")
    if response_format not in ("", "zm_detect"):
        raise RequestError(400, "response_format must be zm_detect or left out")
    if upload is None and document.get("stream") not in (None, ""):
        return await _event(request, document, models, response_format)
    if upload is None:  # the seed's JSON {"url": …}
        url = document.get("url")
        if not isinstance(url, str) or not url:
            raise RequestError(400, "no image: send a multipart 'file', a JSON 'url' or 'stream'")
        upload = Upload(await fetch_for(request, url), fields)
    result = await run_detection(request, upload.image, models, None)
    _keep_upload(request, upload)
    if response_format == "zm_detect":
        return json_text(render_zm_detect(result))
    return json_text(render(result))


def _models(request: web.Request, kind: str, gender: bool) -> list[str]:
    if kind == "object":
        return ["objects"]
    if gender:
        if "genderage" not in request.app[ENGINE].registry:
            raise RequestError(400, "gender detection is not installed on this server")
        return ["genderage"]
    return ["recognize"]  # mlapi 2.x named each face: a known person, or unknown


async def _event(
    request: web.Request, document: dict[str, Any], models: list[str], response_format: str
) -> web.Response:
    """zm_detect's event path: the event's frames from ZoneMinder, the best frame's
    matches by the request's strategy (first frame with any, most, most unique)."""
    if ZONEMINDER not in request.app:
        raise RequestError(400, "this server reads no ZoneMinder events: start it with --zm-portal")
    event = str(document["stream"]).strip()
    if not EVENT_ID.match(event):
        raise RequestError(400, "stream must be a ZoneMinder event id")
    options = FrameOptions.parse(document.get("stream_options"))  # MlapiError: a 400
    zoneminder = request.app[ZONEMINDER]
    if options.delay:
        await asyncio.sleep(options.delay)
    best: tuple[tuple[int, ...], str, Result] | None = None
    for frame in options.frames:
        data = await zoneminder.frame(event, frame, options)
        if data is None:
            continue
        result = await run_detection(request, data, models, None)
        score = _score(result, options.strategy)
        if best is None or score > best[0]:
            best = (score, frame, result)
        if options.strategy == "first" and result.detections:
            break
    if best is None:
        raise RequestError(404, f"ZoneMinder gave no frame of event {event}")
    _, frame, result = best
    resized = _resized(result, options.resize)
    if response_format == "zm_detect":
        dims = [resized.height, resized.width] if options.resize else None
        return json_text(render_zm_detect(resized, frame, dims, [result.height, result.width]))
    return json_text(render(resized))


def _score(result: Result, strategy: str) -> tuple[int, ...]:
    labels = [d.label for d in result.detections]
    if strategy == "most_unique":
        return (len(set(labels)), len(labels))
    return (len(labels),)


def _resized(result: Result, width: int | None) -> Result:
    """The result in the pixels of the frame resized to `width` (mlapi 2.x detected on
    frames resized so, and zm_detect draws on the same size)."""
    if not width or width == result.width:
        return result
    factor = width / result.width
    height = max(1, round(result.height * factor))

    def scale(d: Detection) -> Detection:
        x1, y1, x2, y2 = (v * factor for v in d.box)
        return replace(d, box=clip_box(x1, y1, x2, y2, width, height), keypoints=())

    scaled = tuple(scale(d) for d in result.detections)
    return Result(width, height, scaled)


def _keep_upload(request: web.Request, upload: Upload) -> None:
    """Store the image only when the server was started with an uploads directory."""
    folder = request.app[STATE].config.uploads
    if folder is None or upload.fields.get("delete", "false").lower() == "true":
        return
    suffix = {"jpeg": ".jpg"}.get(sniff(upload.data) or "", f".{sniff(upload.data)}")  # type: ignore[arg-type]
    (folder / f"{uuid.uuid4().hex}{suffix}").write_bytes(upload.data)  # type: ignore[arg-type]


def add_routes(app: web.Application) -> None:
    add_post(app, "/api/v1/detect/object", detect_object)
    config = app[STATE].config
    if config.zm_portal:
        portal = Portal(config.zm_portal.rstrip("/"), config.zm_user, config.zm_password)
        app[ZONEMINDER] = ZoneMinder(portal, config.url_networks, config.max_body)


DIALECT = Dialect("mlapi", ("/api/v1/detect/object",), add_routes)
