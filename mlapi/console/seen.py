"""The console's part of the memory of faces seen: the "Unknown faces" page (groups of faces
recognition could not name, shown as face grids, named once, merged, forgotten; one face
moved out or forgotten) and each person's history on the People page ("Not NAME" when a
recognition was wrong). What each does is mlapi.sightings.naming's, as for the API."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from mlapi.console.access import signed_in_only
from mlapi.openapi import body
from mlapi.sightings import naming
from mlapi.web.kit import SERVER, RequestError, in_state, json_object, json_text, whole_number

PICTURE = "/console/api/sightings/{id}/picture"  # the page's own, behind its session
ID = re.compile(r"[0-9a-f]{1,64}")  # group and sighting ids
GROUPS, GROUPS_MOST = 50, 1000  # groups per page of the listing
BEST, BEST_MOST = 8, 50  # faces shown per group
HISTORY, HISTORY_MOST = 20, 1000  # sightings per page of a person's history


def _query(name: str, default: int, most: int, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": what,
        "schema": {"type": "integer", "minimum": 0, "maximum": most, "default": default},
    }


def _id(request: web.Request, name: str, what: str) -> str:
    value = request.match_info[name]
    if not ID.fullmatch(value):
        raise RequestError(404, f"no {what} {value[:40]!r}")
    return value


@signed_in_only(
    "the groups of unknown faces, most recently seen first, each with its best faces and "
    "maybe a known person it resembles; ?cluster=ID: every face of one group; `remembering`: "
    "whether this server keeps the faces it sees (false with --no-face-memory)",
    params=[
        _query("offset", 0, 10**9, "groups to skip"),
        _query("limit", GROUPS, GROUPS_MOST, "groups in the page"),
        _query("best", BEST, BEST_MOST, "faces shown per group, the best first"),
        {
            "name": "cluster",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "one group's id: all its faces",
        },
    ],
)
async def unknown(request: web.Request) -> web.Response:
    state = request.app[SERVER]
    cluster = request.query.get("cluster")
    if cluster is not None:
        if not ID.fullmatch(cluster):
            raise RequestError(404, f"no group of unknown faces {cluster[:40]!r}")
        one = await in_state(request, state.sightings.cluster, cluster)
        shown = await in_state(request, naming.shown_cluster, state.faces, one, PICTURE)
        return json_text({"clusters": [shown], "total": 1, "offset": 0, "limit": 1})
    offset = whole_number(request, "offset", 0, 10**9)
    limit = whole_number(request, "limit", GROUPS, GROUPS_MOST)
    best = whole_number(request, "best", BEST, BEST_MOST)
    listing = await in_state(
        request, naming.unknown_listing, state.faces, state.sightings, PICTURE, best, limit, offset
    )
    remembering = state.recorder is not None
    return json_text({**listing, "offset": offset, "limit": limit, "remembering": remembering})


@signed_in_only(
    "name a group: its best faces become samples of the person (new or known), every face "
    "in it theirs: {name, samples, attributed, warning}",
    body=body(
        "application/json",
        {
            "name": {"type": "string", "description": "a new or known person"},
            "sightings": {
                "type": "array",
                "items": {"type": "string"},
                "description": "only these faces of the group (default: all)",
            },
        },
        ["name"],
    ),
)
async def name_cluster(request: web.Request) -> web.Response:
    cluster = _id(request, "cluster", "group of unknown faces")
    document = await json_object(request)
    name = document.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RequestError(400, "type the person's name")
    chosen = None
    if "sightings" in document:
        chosen = _ids(document, "sightings")
    state = request.app[SERVER]
    named = await in_state(
        request, naming.name_cluster, state.faces, state.sightings, cluster, name, chosen
    )
    return json_text(naming.shown_named(named))


def _ids(document: dict[str, Any], field: str) -> list[str]:
    value = document.get(field)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError(400, f"{field} must be a list of ids")
    return value


@signed_in_only(
    "merge groups of unknown faces into the first: {cluster}",
    body=body("application/json", {"clusters": {"type": "array", "items": {"type": "string"}}}),
)
async def merge(request: web.Request) -> web.Response:
    clusters = _ids(await json_object(request), "clusters")
    if len(clusters) < 2 or len(set(clusters)) != len(clusters):
        raise RequestError(400, "choose two or more groups to merge")
    into = await in_state(request, request.app[SERVER].sightings.merge, clusters)
    return json_text({"cluster": into})


@signed_in_only("forget a group of unknown faces and its pictures: {removed}")
async def forget_cluster(request: web.Request) -> web.Response:
    cluster = _id(request, "cluster", "group of unknown faces")
    removed = await in_state(request, request.app[SERVER].sightings.forget, cluster)
    return json_text({"removed": removed})


@signed_in_only("move one face out of its group into a group of its own: {cluster}")
async def move_out(request: web.Request) -> web.Response:
    sighting = _id(request, "sighting", "face")
    cluster = await in_state(request, request.app[SERVER].sightings.move_out, sighting)
    return json_text({"cluster": cluster})


@signed_in_only("forget one face seen and its picture: {removed: ID}")
async def forget_sighting(request: web.Request) -> web.Response:
    sighting = _id(request, "sighting", "face")
    await in_state(request, request.app[SERVER].sightings.forget_sighting, sighting)
    return json_text({"removed": sighting})


@signed_in_only("a face seen, as the picture kept of it (JPEG)")
async def picture(request: web.Request) -> web.Response:
    sighting = _id(request, "sighting", "face")
    jpeg = await in_state(request, request.app[SERVER].sightings.picture, sighting)
    if jpeg is None:
        raise web.HTTPNotFound(text="no picture of this face")
    # Private: a face is personal data; the browser keeps it only for this session's views.
    headers = {"Cache-Control": "private, max-age=3600"}
    return web.Response(body=jpeg, content_type="image/jpeg", headers=headers)


@signed_in_only(
    "not this person after all: the face is unknown again (a group of its own) and the "
    "sample that named it is removed: {sighting, cluster, was, removed_sample}"
)
async def not_person(request: web.Request) -> web.Response:
    sighting = _id(request, "sighting", "face")
    state = request.app[SERVER]
    fixed = await in_state(request, naming.not_person, state.faces, state.sightings, sighting)
    return json_text(fixed)


@signed_in_only(
    "where and when a person was seen, newest first: {sightings, offset, limit}",
    params=[
        _query("offset", 0, 10**9, "sightings to skip"),
        _query("limit", HISTORY, HISTORY_MOST, "sightings in the page"),
    ],
)
async def person_sightings(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    offset = whole_number(request, "offset", 0, 10**9)
    limit = whole_number(request, "limit", HISTORY, HISTORY_MOST)
    found = await in_state(
        request, naming.history, request.app[SERVER].sightings, name, PICTURE, limit, offset
    )
    return json_text({**found, "offset": offset, "limit": limit})
