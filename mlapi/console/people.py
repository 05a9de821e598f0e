"""The console's People page: the gallery a page at a time, adding people from photos,
renaming, forgetting, and what a test photo's faces are to everyone known."""

from __future__ import annotations

from typing import Any

import numpy as np
from aiohttp import web

from mlapi import attributes, text
from mlapi.console.access import signed_in_only
from mlapi.enroll import enroll
from mlapi.errors import MlapiError
from mlapi.result import dumps
from mlapi.similarity import normalise, similarity
from mlapi.stores import Sample
from mlapi.web.kit import (
    ANY_OFFSET,
    ENGINE,
    SERVER,
    RequestError,
    in_pool,
    in_state,
    json_object,
    json_text,
    off_loop,
    page_param,
    read_upload,
    whole_number,
)

MAX_PHOTOS = 10  # photos per "add person" form


# -- people ------------------------------------------------------------------------------
PEOPLE_PAGE = 100  # people per page of the listing unless `limit` asks for another number
PEOPLE_PAGE_MOST = 1000  # a larger `limit` is cut to this


@signed_in_only(
    "known people (by name) and their samples, a page at a time: `total` counts everyone",
    params=[
        page_param("offset", 0, ANY_OFFSET, "people to skip, in name order"),
        page_param("limit", PEOPLE_PAGE, PEOPLE_PAGE_MOST, "people in the page"),
    ],
)
async def people(request: web.Request) -> web.Response:
    """A page of `limit` people from `offset` in name order, with every sample of each,
    and `total`: a gallery of 30,000 samples is 3 MB of JSON at once. Built off the
    event loop, which goes on answering meanwhile."""
    offset = whole_number(request, "offset", 0, ANY_OFFSET)
    limit = whole_number(request, "limit", PEOPLE_PAGE, PEOPLE_PAGE_MOST)
    state = request.app[SERVER]
    faces, sightings = state.faces, state.sightings
    names, samples, last = await in_state(
        request, lambda: (faces.names(), faces.samples(), sightings.last_seen())
    )
    page = await off_loop(request, _people_page, names, samples, offset, limit, last)
    return web.Response(text=page, content_type="application/json")


def _people_page(
    names: list[str],
    samples: list[Sample],
    offset: int,
    limit: int,
    last_seen: dict[str, float] | None = None,
) -> str:
    """The page as JSON text: dumps() of the whole document, made a person at a time, so
    no call holds the GIL (and the event loop) for long, nor keeps 10,000 dicts alive.
    Each person's `last_seen`: when recognition last saw them (seconds), else null."""
    last_seen = last_seen or {}
    everyone = sorted({*names, *(s.name for s in samples)})
    chosen = everyone[offset : offset + limit]
    listed: dict[str, list[Sample]] = {name: [] for name in chosen}
    for s in samples:
        theirs = listed.get(s.name)
        if theirs is not None:
            theirs.append(s)
    rows = ", ".join(
        dumps(
            {
                "name": name,
                "last_seen": _seconds(last_seen.get(name)),
                "samples": [_sample_row(s) for s in listed[name]],
            }
        )
        for name in chosen
    )
    rest = dumps({"total": len(everyone), "offset": offset, "limit": limit})
    return f'{{"people": [{rows}], {rest[1:]}'


def _seconds(at: float | None) -> float | None:
    return None if at is None else round(at, 3)


def _sample_row(s: Sample) -> dict[str, Any]:
    return {"id": s.id, "created": round(s.created, 3), "source": s.source, "model": s.model}


@signed_in_only("add a person, or samples of one, from photos (each refusal in words)")
async def add_person(request: web.Request) -> web.Response:
    """`name` and one or more `photo` parts: a sample from each photo that passes the
    quality gate, and in words why each other photo was refused."""
    upload = await read_upload(request, file_field="photo", require_image=False, fetch=False)
    name = (upload.fields.get("name") or "").strip()
    if not name:
        raise RequestError(400, "a person needs a name")
    photos = [data for field, data in upload.files if field == "photo"] or (
        [upload.data] if upload.data else []
    )
    if not photos:
        raise RequestError(400, "choose at least one photo of the person")
    if len(photos) > MAX_PHOTOS:
        raise RequestError(413, f"at most {MAX_PHOTOS} photos at once")
    engine, faces = request.app[ENGINE], request.app[SERVER].faces
    outcomes: list[dict[str, Any]] = []
    for number, data in enumerate(photos, 1):
        try:
            done = await in_pool(request, enroll, engine, faces, name, data, "console", image=data)
        except MlapiError as exc:
            outcomes.append({"photo": number, "added": False, "reason": text.shown(exc.message)})
            continue
        outcomes.append(
            {"photo": number, "added": True, "sample": done.sample_id, "warning": done.warning}
        )
    added = sum(1 for o in outcomes if o["added"])
    return json_text({"name": name, "added": added, "photos": outcomes})


@signed_in_only("a person with no samples yet")
async def create_person(request: web.Request) -> web.Response:
    body = await json_object(request)
    name = str(body.get("name") or "").strip()
    if not name:
        raise RequestError(400, "a person needs a name")
    faces = request.app[SERVER].faces
    if not await in_state(request, faces.create, name):
        raise RequestError(409, f"{name!r} is already known")
    return json_text({"name": name, "created": True})


@signed_in_only("rename a person (merging into an existing one)")
async def rename_person(request: web.Request) -> web.Response:
    old = request.match_info["name"]
    body = await json_object(request)
    new = str(body.get("name") or "").strip()
    if not new:
        raise RequestError(400, "the new name is empty")
    state = request.app[SERVER]
    moved = await in_state(request, state.faces.rename, old, new)
    await in_state(request, state.sightings.renamed, old, new)  # their history follows
    return json_text({"name": new, "samples": moved})


@signed_in_only("forget a person and their samples")
async def remove_person(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    removed = await in_state(request, request.app[SERVER].faces.remove, name)
    return json_text({"name": name, "removed": removed})


@signed_in_only("forget one sample")
async def remove_sample(request: web.Request) -> web.Response:
    gone = await in_state(
        request, request.app[SERVER].faces.remove_sample, request.match_info["id"]
    )
    return json_text({"name": gone.name, "removed": gone.id})


@signed_in_only("a sample's face picture (JPEG)")
async def thumbnail(request: web.Request) -> web.Response:
    faces = request.app[SERVER].faces
    jpeg = await in_state(request, faces.thumbnail, request.match_info["id"])
    if jpeg is None:
        raise web.HTTPNotFound(text="no picture for this sample")
    # Private: a face is personal data; the browser keeps it only for this session's views.
    headers = {"Cache-Control": "private, max-age=3600"}
    return web.Response(body=jpeg, content_type="image/jpeg", headers=headers)


@signed_in_only("each face in a photo: its name and its similarity to every known person")
async def recognise_photo(request: web.Request) -> web.Response:
    """Each face in a photo: the name recognition gives it, and its similarity to every
    known person (the calibrated scale recognition uses), best first."""
    upload = await read_upload(request, file_field="photo", fetch=False)
    engine, faces = request.app[ENGINE], request.app[SERVER].faces
    plan = engine.make_plan(["recognize", "faceprint"], None)
    result = await in_pool(request, engine.run_here, upload.image, plan, image=upload.image)
    found = []
    for face in result.detections:
        if not face.embedding:
            continue
        model = attributes.faceprint_model(face)
        vector = normalise(np.asarray(face.embedding, np.float32))
        ranking = await in_state(request, faces.ranking, vector, model)
        found.append(
            {
                "box": list(face.box),
                "identity": attributes.identity(face),
                "similarity": [
                    {"name": m.name, "similarity": round(similarity(m.similarity, model), 3)}
                    for m in ranking
                ],
            }
        )
    return json_text({"width": result.width, "height": result.height, "faces": found})
