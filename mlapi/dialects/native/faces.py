"""The faces seen, in mlapi's own API: the groups of unknown faces (list, name, merge, move
one face out, forget) and each person's sightings (history, "not this person")."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from mlapi.openapi import body, operation
from mlapi.sightings import naming
from mlapi.web.kit import (
    SERVER,
    RequestError,
    Routes,
    in_state,
    json_object,
    json_text,
    whole_number,
)

PICTURE = "/api/v1/faces/sightings/{id}/picture"
ID = re.compile(r"[0-9a-f]{1,64}")  # cluster and sighting ids
PAGE, PAGE_MOST = 100, 1000


def _page(name: str, default: int, most: int, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": what,
        "schema": {"type": "integer", "minimum": 0, "maximum": most, "default": default},
    }


def _id(request: web.Request, name: str) -> str:
    value = request.match_info[name]
    if not ID.fullmatch(value):
        raise RequestError(404, f"no {name} {value[:40]!r}")
    return value


def _strings(document: dict[str, Any], field: str) -> list[str]:
    value = document.get(field)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError(400, f"{field} must be a list of ids")
    return value


def _only(document: dict[str, Any], allowed: set[str]) -> None:
    stray = sorted(set(document) - allowed)
    if stray:
        raise RequestError(
            400, f"unknown field {', '.join(stray)} (allowed: {', '.join(sorted(allowed))})"
        )


@operation(
    "the groups of unknown faces recognition saw, most recently seen first: {clusters: [{id, "
    "count, first_seen, last_seen, maybe: {name, similarity} | null, sightings: [{id, seen, "
    "source, box, quality, picture}]}], total}; ?cluster=ID: every face of one group",
    tag="native",
    params=[
        _page("offset", 0, 10**9, "groups to skip"),
        _page("limit", PAGE, PAGE_MOST, "groups in the page"),
        _page("best", 6, 50, "faces shown per group, the best first"),
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
        return json_text({"clusters": [shown], "total": 1})
    offset = whole_number(request, "offset", 0, 10**9)
    limit = whole_number(request, "limit", PAGE, PAGE_MOST)
    best = whole_number(request, "best", 6, 50)
    listing = await in_state(
        request, naming.unknown_listing, state.faces, state.sightings, PICTURE, best, limit, offset
    )
    return json_text(listing)


NAME_BODY = body(
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
)


@operation(
    "name a group: its best faces become samples of NAME (new or known), and every face "
    "in it NAME's sighting: {name, samples: [ids], attributed, warning}",
    tag="native",
    body=NAME_BODY,
)
async def name_cluster(request: web.Request) -> web.Response:
    cluster = _id(request, "cluster")
    document = await json_object(request)
    _only(document, {"name", "sightings"})
    name = document.get("name")
    if not isinstance(name, str) or not name.strip():
        raise RequestError(400, "name must be a person's name")
    chosen = _strings(document, "sightings") if "sightings" in document else None
    state = request.app[SERVER]
    named = await in_state(
        request, naming.name_cluster, state.faces, state.sightings, cluster, name, chosen
    )
    return json_text(naming.shown_named(named))


@operation(
    "merge groups of unknown faces into the first: {cluster}",
    tag="native",
    body=body("application/json", {"clusters": {"type": "array", "items": {"type": "string"}}}),
)
async def merge(request: web.Request) -> web.Response:
    document = await json_object(request)
    _only(document, {"clusters"})
    clusters = _strings(document, "clusters")
    if len(clusters) < 2 or len(set(clusters)) != len(clusters):
        raise RequestError(400, "clusters must name two or more different groups")
    into = await in_state(request, request.app[SERVER].sightings.merge, clusters)
    return json_text({"cluster": into})


@operation(
    "forget a group of unknown faces (not a face, or nobody to name): {removed}", tag="native"
)
async def forget_cluster(request: web.Request) -> web.Response:
    cluster = _id(request, "cluster")
    removed = await in_state(request, request.app[SERVER].sightings.forget, cluster)
    return json_text({"removed": removed})


@operation("move one face out of its group into a group of its own: {cluster}", tag="native")
async def move_out(request: web.Request) -> web.Response:
    sighting = _id(request, "sighting")
    cluster = await in_state(request, request.app[SERVER].sightings.move_out, sighting)
    return json_text({"cluster": cluster})


@operation("forget one sighting: {removed: ID}", tag="native")
async def forget_sighting(request: web.Request) -> web.Response:
    sighting = _id(request, "sighting")
    await in_state(request, request.app[SERVER].sightings.forget_sighting, sighting)
    return json_text({"removed": sighting})


@operation("a sighting's face picture (JPEG)", tag="native")
async def picture(request: web.Request) -> web.Response:
    sighting = _id(request, "sighting")
    jpeg = await in_state(request, request.app[SERVER].sightings.picture, sighting)
    if jpeg is None:
        raise RequestError(404, f"no picture of sighting {sighting!r}")
    headers = {"Cache-Control": "private, max-age=3600"}  # a face is personal data
    return web.Response(body=jpeg, content_type="image/jpeg", headers=headers)


@operation(
    "a recognition that was wrong: the face is unknown again (a group of its own) and the "
    "person's sample that matched it is removed: {sighting, cluster, was, removed_sample}",
    tag="native",
)
async def not_person(request: web.Request) -> web.Response:
    sighting = _id(request, "sighting")
    state = request.app[SERVER]
    fixed = await in_state(request, naming.not_person, state.faces, state.sightings, sighting)
    return json_text(fixed)


@operation(
    "where and when a person was seen, newest first: {sightings: [{id, seen, source, box, "
    "similarity, picture}]}",
    tag="native",
    params=[
        _page("offset", 0, 10**9, "sightings to skip"),
        _page("limit", 50, PAGE_MOST, "sightings in the page"),
    ],
)
async def person_sightings(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    offset = whole_number(request, "offset", 0, 10**9)
    limit = whole_number(request, "limit", 50, PAGE_MOST)
    found = await in_state(
        request, naming.history, request.app[SERVER].sightings, name, PICTURE, limit, offset
    )
    return json_text(found)


def add_routes(routes: Routes) -> None:
    routes.get("/api/v1/faces/unknown", unknown)
    routes.post("/api/v1/faces/unknown/merge", merge)
    routes.post("/api/v1/faces/unknown/{cluster}/name", name_cluster)
    routes.delete("/api/v1/faces/unknown/{cluster}", forget_cluster)
    routes.post("/api/v1/faces/sightings/{sighting}/move", move_out)
    routes.post("/api/v1/faces/sightings/{sighting}/not", not_person)
    routes.delete("/api/v1/faces/sightings/{sighting}", forget_sighting)
    routes.get("/api/v1/faces/sightings/{sighting}/picture", picture)
    routes.get("/api/v1/faces/people/{name}/sightings", person_sightings)
