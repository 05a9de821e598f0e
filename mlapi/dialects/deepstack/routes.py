"""The DeepStack / CodeProject.AI dialect (`/v1/vision/*`, `/v1/image/alpr`), for Home
Assistant, Frigate, Double Take, Blue Iris, Agent DVR, Frigate's plate recogniser and
friends.

Multipart form in, `{"success": …, "duration": 0}` JSON out (CodeProject.AI's ALPR module's
own shape for plates). The key comes as the `api_key` form field (or the usual headers)
and is checked against mlapi's API keys.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from aiohttp import web

from mlapi.dialects.deepstack import render
from mlapi.enroll import enroll
from mlapi.errors import AuthError, GalleryError, MlapiError, ModelMissing
from mlapi.openapi import BINARY, body, operation
from mlapi.similarity import similarity
from mlapi.web.kit import (
    AUTHENTICATED,
    ENGINE,
    SERVER,
    USER,
    Dialect,
    Handler,
    RequestError,
    Routes,
    Upload,
    authenticate,
    in_pool,
    in_state,
    json_text,
    read_upload,
    run_detection,
)

MAX_PREDICTIONS = 20  # Frigate fails on more
DEFAULT_CONFIDENCE = {"detection": 0.40, "face": 0.55, "recognize": 0.67, "alpr": 0.5}


def answer(**body: Any) -> web.Response:
    return json_text(render.document(**body))


# Every DeepStack route takes a form; the key may come as its api_key field, so no header
# security is required.
FORM = body(
    "multipart/form-data",
    {
        "image": BINARY,
        "api_key": {"type": "string"},
        "min_confidence": {"type": "number"},
        "userid": {"type": "string"},
    },
)


def documented(summary: str) -> Callable[[Handler], Handler]:
    return operation(summary, tag="deepstack", body=FORM, auth=False)


async def checked_upload(request: web.Request, file_field: str = "image") -> Upload:
    """The form, its api_key checked before any image in it is read; 401 in DeepStack's
    words otherwise. A key in the headers was checked before the body was touched. The
    image is the `file_field` part, else the form's first file."""

    async def authorise(fields: dict[str, str]) -> None:
        try:
            key = fields.get(DIALECT.form_key or "")
            request[USER] = await authenticate(request, request.app[SERVER], key)
        except AuthError as exc:
            raise AuthError("Incorrect api key") from exc

    already = request.get(AUTHENTICATED, False)
    return await read_upload(
        request,
        file_field=file_field,
        require_image=False,
        authorise=None if already else authorise,
    )


def _userid(upload: Upload) -> str:
    """The person a register or delete call names; DeepStack's 400 when there is none."""
    userid = (upload.fields.get("userid") or "").strip()
    if not userid:
        raise RequestError(400, "userid not specified")
    return userid


async def checked_image(request: web.Request, file_field: str = "image") -> Upload:
    upload = await checked_upload(request, file_field)
    if not upload.data:
        raise RequestError(400, "No valid image file found")
    return upload


def min_confidence(upload: Upload, route: str) -> float:
    raw = upload.fields.get("min_confidence")
    if raw in (None, ""):
        return DEFAULT_CONFIDENCE[route]
    try:
        value = float(raw)
    except ValueError:
        raise RequestError(400, "Invalid value for min_confidence") from None
    if value != value or value < 0:
        raise RequestError(400, "Invalid value for min_confidence")
    if value > 1:
        raise RequestError(400, "min_confidence cannot be greater than 1")
    return value


def max_predictions(upload: Upload) -> int:
    raw = upload.fields.get("max_predictions", str(MAX_PREDICTIONS))
    if not re.fullmatch(r"[0-9]{1,4}", raw) or not 1 <= int(raw) <= 1000:
        raise RequestError(400, "Invalid value for max_predictions")
    return int(raw)


@documented("COCO objects (DeepStack)")
async def detection(request: web.Request) -> web.Response:
    upload = await checked_image(request)
    threshold, limit = min_confidence(upload, "detection"), max_predictions(upload)
    options = {"objects": {"confidence": threshold, "max_count": limit}}
    result = await run_detection(request, upload.image, ["objects"], options)
    return json_text(render.objects(result, limit))


def custom_models(request: web.Request) -> list[str]:
    """Installed detectors that find labelled boxes."""
    return sorted(n for n, cls in request.app[ENGINE].registry.items() if cls.task == "objects")


@documented("objects from a named detector; `list` lists them")
async def custom(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    if name == "list":
        await checked_upload(request)
        return answer(models=custom_models(request))
    if name not in custom_models(request):
        raise RequestError(404, f"no custom model named {name!r}")
    upload = await checked_image(request)
    threshold, limit = min_confidence(upload, "detection"), max_predictions(upload)
    options = {name: {"confidence": threshold, "max_count": limit}}
    result = await run_detection(request, upload.image, [name], options)
    return json_text(render.objects(result, limit))


@documented("faces (DeepStack)")
async def face(request: web.Request) -> web.Response:
    upload = await checked_image(request)
    options = {"faces": {"confidence": min_confidence(upload, "face")}}
    result = await run_detection(request, upload.image, ["faces"], options)
    return json_text(render.faces(result))


@documented("known faces from the gallery")
async def recognize(request: web.Request) -> web.Response:
    upload = await checked_image(request)
    options = {"recognize": {"threshold": min_confidence(upload, "recognize")}}
    result = await run_detection(request, upload.image, ["recognize"], options)
    return json_text(render.recognized(result))


@documented("add samples of `userid` (one or more images)")
async def register(request: web.Request) -> web.Response:
    upload = await checked_upload(request)
    userid = _userid(upload)
    if not upload.files:
        raise RequestError(400, "No valid image file found")
    engine = request.app[ENGINE]
    gallery = request.app[SERVER].faces
    existed = userid in await in_state(request, gallery.names)
    added, reasons, crowded, warnings = 0, [], 0, []
    for name, data in upload.files:  # several samples per person, never replacing old ones
        try:
            done = await in_pool(
                request, enroll, engine, gallery, userid, data, name, "dlib", True, image=data
            )
            added += 1
            crowded = max(crowded, done.faces_found)
            warnings += [done.warning] if done.warning else []
        except MlapiError as exc:  # e.g. 413 for an image over the size limit
            reasons.append((exc.status if 400 <= exc.status < 500 else 400, exc.message))
    if not added:
        status, reason = reasons[0]
        raise RequestError(status, "no face detected" if reason.startswith("no face") else reason)
    message = "face updated" if existed else "face added"
    if crowded > 1:  # DeepStack also takes the largest face; say so
        message += f" (the largest of {crowded} faces in the photo)"
    if warnings:  # an extra field: clients that read only "message" are unaffected
        return answer(message=message, warning=warnings[0])
    return answer(message=message)


@documented("known people")
async def face_list(request: web.Request) -> web.Response:
    await checked_upload(request)
    return answer(faces=await in_state(request, request.app[SERVER].faces.names))


@documented("forget `userid`")
async def face_delete(request: web.Request) -> web.Response:
    upload = await checked_upload(request)
    userid = _userid(upload)
    with contextlib.suppress(GalleryError):  # DeepStack answers success for unknown names
        await in_state(request, request.app[SERVER].faces.remove, userid)
    return answer()


def _best_faceprint(engine: Any, data: bytes) -> np.ndarray:
    faces = engine.run_here(data, engine.make_plan(["faceprint"], None)).detections
    if not faces:
        raise RequestError(400, "no face detected")
    best = max(faces, key=lambda d: (d.box[2] - d.box[0]) * d.confidence)
    return np.asarray(best.embedding, np.float32)


@documented("similarity of the faces in two images")
async def match(request: web.Request) -> web.Response:
    upload = await checked_upload(request)
    if len(upload.files) != 2:
        raise RequestError(400, "exactly two images are needed")
    engine = request.app[ENGINE]
    a, b = [
        await in_pool(request, _best_faceprint, engine, data, image=data)
        for _, data in upload.files
    ]
    return answer(similarity=round(similarity(float(a @ b), "dlib"), 4))


@operation(
    "licence plates (CodeProject.AI's ALPR module: multipart `upload`, any file field)",
    tag="deepstack",
    body=body(
        "multipart/form-data",
        {"upload": BINARY, "api_key": {"type": "string"}, "min_confidence": {"type": "number"}},
    ),
    auth=False,
)
async def alpr(request: web.Request) -> web.Response:
    upload = await checked_image(request, "upload")
    options = {"plates": {"confidence": min_confidence(upload, "alpr")}}
    started = time.perf_counter()
    result = await run_detection(request, upload.image, ["plates"], options)
    took = time.perf_counter() - started
    inference = sum(result.stages.values())
    return json_text(render.plates(result, round(took * 1000), round(inference * 1000)))


@operation("CodeProject.AI ping", tag="deepstack", auth=False)
async def ping(request: web.Request) -> web.Response:
    return answer()


@documented("not available in mlapi (scene): 403")
async def not_available(request: web.Request) -> web.Response:
    await checked_upload(request)
    raise RequestError(403, f"{request.path} is not available on this server")


def error(status: int, message: str, code: int | None) -> dict[str, Any]:
    return {"success": False, "error": message, "duration": 0}


def add_routes(routes: Routes) -> None:
    for path, handler in (
        ("/v1/vision/detection", detection),
        ("/v1/vision/custom/{model}", custom),
        ("/v1/vision/face", face),
        ("/v1/vision/face/", face),
        ("/v1/vision/face/recognize", recognize),
        ("/v1/vision/face/register", register),
        ("/v1/vision/face/list", face_list),
        ("/v1/vision/face/delete", face_delete),
        ("/v1/vision/face/match", match),
        ("/v1/vision/scene", not_available),
        ("/v1/vision/alpr", alpr),
        ("/v1/image/alpr", alpr),  # CodeProject.AI 2.x's path for it
    ):
        routes.post(path, handler)
    routes.get("/v1/server/status/ping", ping)


DIALECT = Dialect(
    "deepstack",
    add_routes,
    error_body=error,
    form_key="api_key",
    statuses={ModelMissing: 403},  # what DeepStack answers for a model it does not run
)
