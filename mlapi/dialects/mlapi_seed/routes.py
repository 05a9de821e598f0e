"""The seed mlapi's route, `POST /api/v1/detect/object` (answers: mlapi.render.mlapi_seed)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import uuid
from collections.abc import Awaitable, Iterator
from dataclasses import replace
from typing import Any, TypeVar

from aiohttp import web

from mlapi.dialects.mlapi_seed.events import (
    EVENT_ID,
    FrameOptions,
    Portal,
    Visit,
    ZoneMinder,
)
from mlapi.dialects.mlapi_seed.settings import ZoneMinderSettings
from mlapi.errors import TooManyEvents, ZoneMinderTimeout
from mlapi.images import sniff
from mlapi.openapi import IMAGE_BODY, operation, query
from mlapi.render.mlapi_seed import render, render_zm_detect
from mlapi.result import Detection, Result, clip_box
from mlapi.web.kit import (
    ENGINE,
    SERVER,
    USER,
    Dialect,
    RequestError,
    Routes,
    Upload,
    admit,
    fetch_for,
    give_back_slot,
    in_state,
    json_object,
    json_text,
    read_upload,
    run_detection,
)

T = TypeVar("T")
log = logging.getLogger("mlapi.zoneminder")

# -- routes ------------------------------------------------------------------------------
ZONEMINDER = web.AppKey("zoneminder", ZoneMinder)
# Each user's event requests in flight (None: anonymous), as their deadlines (loop time).
ZM_EVENTS = web.AppKey("zm_events", dict[str | None, list[float]])


@operation(
    "the seed mlapi's detection array; zm_detect's event path (a JSON body with `stream`, "
    "an event id, read from the server's ZoneMinder portal); type=alpr reads plates; "
    "type=face_names lists people",
    tag="mlapi",
    body=IMAGE_BODY,
    params=[
        query("type", "what to detect", ["object", "face", "alpr", "face_names"]),
        query("gender", "add gender to faces", ["true", "false"]),
        query("delete", "do not keep the upload", ["true", "false"]),
        query("response_format", "zm_detect 6.x's shape", ["zm_detect"]),
    ],
)
async def detect_object(request: web.Request) -> web.Response:
    """The seed's POST /api/v1/detect/object?type=object|face|alpr|face_names
    [&gender=true][&delete=true][&response_format=zm_detect]."""
    if request.content_type == "application/json":  # zm_detect's event path, or nothing
        fields: dict[str, str] = dict(request.query)
        document = await json_object(request)
        upload = None
    else:
        upload = await read_upload(request, require_image=False)
        fields, document = upload.fields, {}
    kind = fields.get("type", "object")
    if kind == "face_names":  # mlapi 2.x: the known people, for zm_detect 5.x and 6.0
        names = await in_state(request, request.app[SERVER].faces.names)
        return json_text({"names": names})
    if kind not in ("object", "face", "alpr"):
        raise RequestError(400, f"unknown type {kind!r}: use object, face, alpr or face_names")
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
    if kind == "alpr":  # each plate labelled with its letters and digits
        return ["plates"]
    if gender:
        if "genderage" not in request.app[ENGINE].registry:
            raise RequestError(400, "gender detection is not installed on this server")
        return ["genderage"]
    return ["recognize"]  # mlapi 2.x named each face: a known person, or unknown


async def _event(
    request: web.Request, document: dict[str, Any], models: list[str], response_format: str
) -> web.Response:
    """zm_detect's event path: the event's frames from ZoneMinder, the best frame's
    matches by the request's strategy (first frame with any, most, most unique).

    Waiting on the portal (the delay, sleeps between attempts, logins, downloads) holds no
    admission slot: only each frame's decoding and inference take one, in turn. The whole
    request waits at most --zm-event-timeout, and one user has at most
    --zm-events-per-user of them in flight (more: 429)."""
    if ZONEMINDER not in request.app:
        raise RequestError(400, "this server reads no ZoneMinder events: start it with --zm-portal")
    event = str(document["stream"]).strip()
    if not EVENT_ID.match(event):
        raise RequestError(400, "stream must be a ZoneMinder event id")
    options = FrameOptions.parse(document.get("stream_options"))  # MlapiError: a 400
    timeout = _zoneminder(request).event_timeout
    deadline = asyncio.get_running_loop().time() + timeout
    with _in_flight(request, deadline):
        give_back_slot(request)  # the portal's time is not this server's work
        best = await _best_frame(request, event, options, models, deadline)
    if best is None:
        raise RequestError(404, f"ZoneMinder gave no frame of event {event}")
    _, frame, result = best
    resized = _resized(result, options.resize)
    if response_format == "zm_detect":
        dims = [resized.height, resized.width] if options.resize else None
        return json_text(render_zm_detect(resized, frame, dims, [result.height, result.width]))
    return json_text(render(resized))


async def _best_frame(
    request: web.Request, event: str, options: FrameOptions, models: list[str], deadline: float
) -> tuple[tuple[int, ...], str, Result] | None:
    """(score, frame id, result) of the best frame, or None when ZoneMinder gave none.
    Past the deadline no more waiting starts: the best frame so far, or a 504."""
    zoneminder = request.app[ZONEMINDER]
    visit = Visit()
    best: tuple[tuple[int, ...], str, Result] | None = None
    try:
        if options.delay:
            await _before(deadline, asyncio.sleep(options.delay))
        for frame in options.frames:
            data = await _before(deadline, zoneminder.frame(event, frame, options, visit))
            if data is None:
                continue
            await _before(deadline, admit(request))  # a slot for decoding and inference only
            try:
                result = await run_detection(
                    request, data, models, None, f"ZoneMinder event {event}"
                )
            finally:
                give_back_slot(request)
            score = _score(result, options.strategy)
            if best is None or score > best[0]:
                best = (score, frame, result)
            if options.strategy == "first" and result.detections:
                break
    except _PastDeadline:
        timeout = _zoneminder(request).event_timeout
        if best is None:
            raise ZoneMinderTimeout(
                f"ZoneMinder gave no frame of event {event} within {timeout:g} s"
            ) from None
        log.info("event %s: answering frame %s, the best within %g s", event, best[1], timeout)
    return best


class _PastDeadline(Exception):
    """An event request's --zm-event-timeout ran out while it waited."""


async def _before(deadline: float, work: Awaitable[T]) -> T:
    """`work`, cancelled at `deadline` (loop time)."""
    scope = asyncio.timeout_at(deadline)
    try:
        async with scope:
            return await work
    except TimeoutError:
        if scope.expired():
            raise _PastDeadline from None
        raise


@contextlib.contextmanager
def _in_flight(request: web.Request, deadline: float) -> Iterator[None]:
    """Count the request among its user's event requests (429 past the cap)."""
    events = request.app[ZM_EVENTS]
    user = request.get(USER)  # None: anonymous, all counted together
    limit = _zoneminder(request).events_per_user
    mine = events.get(user, [])
    if len(mine) >= limit:
        wait = max(1, math.ceil(min(mine, default=deadline) - asyncio.get_running_loop().time()))
        raise TooManyEvents(
            f"too many ZoneMinder event requests at once: at most {limit} per user; "
            "retry when one has finished",
            wait,
        )
    events.setdefault(user, []).append(deadline)
    try:
        yield
    finally:
        mine = events[user]
        mine.remove(deadline)
        if not mine:
            del events[user]


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
    folder = request.app[SERVER].config.uploads
    if folder is None or upload.fields.get("delete", "false").lower() == "true":
        return
    suffix = {"jpeg": ".jpg"}.get(sniff(upload.data) or "", f".{sniff(upload.data)}")  # type: ignore[arg-type]
    (folder / f"{uuid.uuid4().hex}{suffix}").write_bytes(upload.data)  # type: ignore[arg-type]


def _zoneminder(request: web.Request) -> ZoneMinderSettings:
    return request.app[SERVER].config.of("mlapi", ZoneMinderSettings)


def add_routes(routes: Routes) -> None:
    routes.post("/api/v1/detect/object", detect_object)
    config = routes.app[SERVER].config
    zoneminder = config.of("mlapi", ZoneMinderSettings)
    if zoneminder.portal:
        portal = Portal(zoneminder.portal.rstrip("/"), zoneminder.user, zoneminder.password)
        routes.app[ZONEMINDER] = ZoneMinder(portal, config.url_networks, config.max_body)
        routes.app[ZM_EVENTS] = {}


DIALECT = Dialect("mlapi", add_routes)
