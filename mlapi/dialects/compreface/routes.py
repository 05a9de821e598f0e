"""CompreFace's REST API, for Double Take's CompreFace detector and `compreface-sdk`.

The key is the `x-api-key` header (an mlapi API key). Recognition answers every enrolled
subject's similarity on mlapi's calibrated scale, best first and unthresholded (the client
decides: Double Take names at 40 % and matches at 60 %). `det_prob_threshold` is a face
probability on CompreFace's scale, where real faces score about 0.99; BlazeFace scores
real faces 0.6-0.9, so its confidence c is reported as 0.8 + (c - 0.5) × 0.4 and the
threshold is mapped back the same way (CompreFace's 0.8 is BlazeFace's 0.5). No face is
HTTP 400 `{"message": "No face is found in the given image", "code": 28}`; other errors
are `{"message", "code"}`.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from aiohttp import web

from mlapi import attributes
from mlapi.dialects.compreface import render
from mlapi.enroll import enroll
from mlapi.errors import GalleryError, NoFaceFound, UnknownPerson
from mlapi.openapi import BINARY, body, operation
from mlapi.result import Detection
from mlapi.sightings import naming
from mlapi.similarity import similarity
from mlapi.web.kit import (
    ENGINE,
    SERVER,
    Dialect,
    RequestError,
    Routes,
    in_pool,
    in_state,
    json_object,
    json_text,
    read_upload,
    run_detection,
)

NO_FACE = 28  # CompreFace's code, the one Double Take checks for "no face"
PLUGINS = {"age": "genderage", "gender": "genderage"}

FILE = body("multipart/form-data", {"file": BINARY})  # what every upload route takes


class NoFace(RequestError):
    code = NO_FACE

    def __init__(self) -> None:
        super().__init__(400, "No face is found in the given image")


def face_threshold(det_prob_threshold: float) -> float:
    return min(0.95, max(0.3, 0.5 + (det_prob_threshold - 0.8) / 0.4))


def _number(fields: dict[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = fields.get(name, "")
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise RequestError(400, f"{name} must be a number") from None
    if not lo <= value <= hi or math.isnan(value):
        raise RequestError(400, f"{name} must be between {lo} and {hi}")
    return value


async def _faces(
    request: web.Request, recognise: bool
) -> tuple[list[Detection], dict[str, str], set[str], float]:
    started = time.perf_counter()
    upload = await read_upload(request, require_image=True)
    fields = upload.fields
    wanted = {p.strip() for p in fields.get("face_plugins", "").split(",")} & set(PLUGINS)
    threshold = _number(fields, "det_prob_threshold", 0.8, 0.0, 1.0)
    # recognize beside faceprint: its answer is not shown here (subjects are ranked below),
    # but it keeps each face for the memory of faces seen, as every dialect's recognition.
    models = ["recognize", "faceprint"] if recognise else ["faces"]
    models += sorted({PLUGINS[p] for p in wanted})
    options = {"faces": {"confidence": face_threshold(threshold)}}
    result = await run_detection(request, upload.image, models, options)
    faces = list(result.detections)
    if not faces:
        raise NoFace()
    limit = int(_number(fields, "limit", 0, 0, 1000))
    if limit:
        faces = sorted(faces, key=lambda d: -(d.box[2] - d.box[0]) * (d.box[3] - d.box[1]))[:limit]
    return faces, fields, wanted, (time.perf_counter() - started) * 1000


@operation(
    "CompreFace: faces with every subject's similarity (multipart file; face_plugins, "
    "det_prob_threshold, limit, prediction_count, status)",
    tag="compreface",
    body=FILE,
)
async def recognize(request: web.Request) -> web.Response:
    faces, fields, wanted, elapsed = await _faces(request, recognise=True)
    count = int(_number(fields, "prediction_count", 1, 1, 1000))
    gallery = request.app[SERVER].faces

    def subjects(d: Detection) -> list[dict[str, Any]]:
        model = attributes.faceprint_model(d)
        ranking = gallery.ranking(np.asarray(d.embedding, np.float32), model)[:count]
        return [
            {"subject": m.name, "similarity": round(similarity(m.similarity, model), 5)}
            for m in ranking
        ]

    # The gallery may be re-read from disk: off the event loop.
    ranked = await in_state(request, lambda: [subjects(d) for d in faces])
    found = [
        _item(d, wanted, fields, elapsed, subjects=s) for d, s in zip(faces, ranked, strict=True)
    ]
    return json_text({"result": found})


@operation("CompreFace: faces only", tag="compreface", body=FILE)
async def detect(request: web.Request) -> web.Response:
    faces, fields, wanted, elapsed = await _faces(request, recognise=False)
    return json_text({"result": [_item(d, wanted, fields, elapsed) for d in faces]})


def _item(
    d: Detection, wanted: set[str], fields: dict[str, str], elapsed: float, **extra: Any
) -> dict[str, Any]:
    item = {"box": render.box(d), **extra, **render.plugins(d, wanted)}
    if fields.get("status", "false").lower() == "true":
        item["execution_time"] = {"detector": round(elapsed, 1)}
    return item


def _subject(fields: dict[str, str]) -> str:
    subject = fields.get("subject", "").strip()
    if not subject:
        raise RequestError(400, "subject is required")
    return subject


@operation("CompreFace: add an example of ?subject=NAME", tag="compreface", body=FILE)
async def add_face(request: web.Request) -> web.Response:
    upload = await read_upload(request)
    subject = _subject(upload.fields)
    engine = request.app[ENGINE]
    try:
        done = await in_pool(
            request,
            enroll,
            engine,
            request.app[SERVER].faces,
            subject,
            upload.data,
            "compreface",
            "dlib",
            True,
            image=upload.image,
        )
    except NoFaceFound as exc:
        raise NoFace() from exc
    answer = {"image_id": done.sample_id, "subject": subject}
    if done.warning:  # an extra field; compreface-sdk and Double Take read only the two
        answer["warning"] = done.warning
    return json_text(answer)


@operation("CompreFace: list examples (page, size, subject)", tag="compreface")
async def list_faces(request: web.Request) -> web.Response:
    fields = dict(request.query)
    page = int(_number(fields, "page", 0, 0, 1_000_000))
    size = int(_number(fields, "size", 20, 1, 1000))
    wanted = fields.get("subject")
    everyone = await in_state(request, request.app[SERVER].faces.samples)
    samples = [s for s in everyone if wanted in (None, "", s.name)]
    chunk = samples[page * size : (page + 1) * size]
    return json_text(
        {
            "faces": [{"image_id": s.id, "subject": s.name} for s in chunk],
            "page_number": page,
            "page_size": size,
            "total_pages": math.ceil(len(samples) / size),
            "total_elements": len(samples),
        }
    )


@operation("CompreFace: delete the examples of ?subject=NAME", tag="compreface")
async def delete_faces(request: web.Request) -> web.Response:
    subject = _subject(dict(request.query))
    try:
        deleted = await in_state(request, request.app[SERVER].faces.remove, subject)
    except GalleryError:
        deleted = 0  # CompreFace answers 0 for a subject with no faces
    return json_text({"deleted": deleted})


@operation("CompreFace: subjects", tag="compreface")
async def subjects(request: web.Request) -> web.Response:
    return json_text({"subjects": await in_state(request, request.app[SERVER].faces.names)})


@operation("CompreFace: delete a subject", tag="compreface")
async def delete_subject(request: web.Request) -> web.Response:
    subject = request.match_info["subject"]
    try:
        await in_state(request, request.app[SERVER].faces.remove, subject)
    except GalleryError as exc:
        raise RequestError(404, f"subject {subject!r} not found") from exc
    return json_text({"subject": subject})


@operation(
    "CompreFace: compare the faces of source_image and target_image", tag="compreface", body=FILE
)
async def verify(request: web.Request) -> web.Response:
    upload = await read_upload(request, require_image=False)
    files = dict(upload.files)
    if not {"source_image", "target_image"} <= set(files):
        raise RequestError(400, "source_image and target_image are required")

    async def prints(data: bytes) -> list[Detection]:
        found = (await run_detection(request, data, ["faceprint"], None)).detections
        if not found:
            raise NoFace()
        return list(found)

    source = max(await prints(files["source_image"]), key=lambda d: d.box[2] - d.box[0])
    targets = await prints(files["target_image"])
    a = np.asarray(source.embedding, np.float32)
    matches = [
        {
            "box": render.box(t),
            "similarity": round(
                similarity(float(a @ np.asarray(t.embedding, np.float32)), "dlib"), 5
            ),
        }
        for t in targets
    ]
    matches.sort(key=lambda m: -float(m["similarity"]))  # type: ignore[arg-type]
    return json_text(
        {"result": [{"source_image_face": {"box": render.box(source)}, "face_matches": matches}]}
    )


@operation(
    "CompreFace: the faces in `file` against the stored example IMAGE_ID (similarity each)",
    tag="compreface",
    body=FILE,
)
async def verify_example(request: web.Request) -> web.Response:
    image_id = request.match_info["image_id"]
    gallery = request.app[SERVER].faces
    stored = await in_state(request, gallery.sample, image_id)
    if stored is None:
        raise RequestError(404, f"image {image_id!r} not found")
    sample, vector = stored
    faces, fields, wanted, elapsed = await _faces(request, recognise=True)
    reference = np.asarray(vector, np.float32)

    def scored(d: Detection) -> dict[str, Any]:
        cosine = float(reference @ np.asarray(d.embedding, np.float32))
        return _item(
            d, wanted, fields, elapsed, similarity=round(similarity(cosine, sample.model), 5)
        )

    result = [scored(d) for d in faces]
    result.sort(key=lambda item: -float(item["similarity"]))
    return json_text({"result": result})


@operation("CompreFace: delete the example IMAGE_ID", tag="compreface")
async def delete_example(request: web.Request) -> web.Response:
    image_id = request.match_info["image_id"]
    gallery = request.app[SERVER].faces
    try:
        sample = await in_state(request, gallery.remove_sample, image_id)
    except GalleryError as exc:
        raise RequestError(404, f"image {image_id!r} not found") from exc
    return json_text({"image_id": sample.id, "subject": sample.name})


async def _subject_body(request: web.Request) -> str:
    document = await json_object(request)
    subject = document.get("subject")
    if not isinstance(subject, str) or not subject.strip():
        raise RequestError(400, "subject is required")
    return subject.strip()


@operation(
    "CompreFace: add a subject with no examples yet",
    tag="compreface",
    body=body("application/json", {"subject": {"type": "string"}}, ["subject"]),
)
async def add_subject(request: web.Request) -> web.Response:
    subject = await _subject_body(request)
    gallery = request.app[SERVER].faces
    if not await in_state(request, gallery.create, subject):
        raise RequestError(400, f"subject {subject!r} already exists")
    return json_text({"subject": subject})


@operation(
    "CompreFace: rename SUBJECT (its examples move; merged into an existing subject)",
    tag="compreface",
    body=body("application/json", {"subject": {"type": "string"}}, ["subject"]),
)
async def rename_subject(request: web.Request) -> web.Response:
    old = request.match_info["subject"]
    new = await _subject_body(request)
    try:
        state = request.app[SERVER]
        await in_state(request, naming.rename_person, state.faces, state.sightings, old, new)
    except UnknownPerson as exc:
        raise RequestError(404, f"subject {old!r} not found") from exc
    return json_text({"updated": True})


@operation("CompreFace: delete every subject and their examples", tag="compreface")
async def delete_subjects(request: web.Request) -> web.Response:
    deleted = await in_state(request, request.app[SERVER].faces.clear)
    return json_text({"deleted": deleted})


def error(status: int, message: str, code: int | None) -> dict[str, Any]:
    return {"message": message, "code": code or status}


def add_routes(routes: Routes) -> None:
    routes.post("/api/v1/recognition/recognize", recognize)
    routes.post("/api/v1/detection/detect", detect)
    routes.post("/api/v1/verification/verify", verify)
    routes.post("/api/v1/recognition/faces", add_face)
    routes.get("/api/v1/recognition/faces", list_faces)
    routes.delete("/api/v1/recognition/faces", delete_faces)
    routes.get("/api/v1/recognition/subjects", subjects)
    routes.delete("/api/v1/recognition/subjects/{subject}", delete_subject)
    routes.post("/api/v1/recognition/faces/{image_id}/verify", verify_example)
    routes.delete("/api/v1/recognition/faces/{image_id}", delete_example)
    routes.post("/api/v1/recognition/subjects", add_subject)
    routes.put("/api/v1/recognition/subjects/{subject}", rename_subject)
    routes.delete("/api/v1/recognition/subjects", delete_subjects)


DIALECT = Dialect("compreface", add_routes, error_body=error)
