"""The memory of faces seen over HTTP: one set of handlers that mlapi's own API and the
console both serve, each with its own picture address, page sizes and access (the API's
keys, the console's session), doing what mlapi.sightings.naming does."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from mlapi.errors import RequestError
from mlapi.openapi import body
from mlapi.sightings import naming
from mlapi.web.answers import json_text
from mlapi.web.bodies import ANY_OFFSET, json_object, page_param, whole_number
from mlapi.web.state import SERVER, in_state

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
ID = re.compile(r"[0-9a-f]{1,64}")  # group and sighting ids


@dataclass(frozen=True)
class Pages:
    """How one front end shows the faces seen: where pictures are, and page sizes."""

    picture: str  # the address of a sighting's picture, with {id}
    groups: int = 100  # groups per page unless `limit` says
    best: int = 6  # faces shown per group unless `best` says
    history: int = 50  # a person's sightings per page unless `limit` says
    most: int = 1000  # the largest `limit`
    most_best: int = 50  # the largest `best`


def unknown_params(pages: Pages) -> list[dict[str, Any]]:
    """The OpenAPI parameters of the listing of unknown faces."""
    return [
        page_param("offset", 0, ANY_OFFSET, "groups to skip"),
        page_param("limit", pages.groups, pages.most, "groups in the page"),
        page_param("best", pages.best, pages.most_best, "faces shown per group, the best first"),
        {
            "name": "cluster",
            "in": "query",
            "required": False,
            "schema": {"type": "string"},
            "description": "one group's id: all its faces",
        },
    ]


def history_params(pages: Pages) -> list[dict[str, Any]]:
    return [
        page_param("offset", 0, ANY_OFFSET, "sightings to skip"),
        page_param("limit", pages.history, pages.most, "sightings in the page"),
    ]


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
MERGE_BODY = body("application/json", {"clusters": {"type": "array", "items": {"type": "string"}}})


def _id(request: web.Request, name: str, what: str) -> str:
    value = request.match_info[name]
    if not ID.fullmatch(value):
        raise RequestError(404, f"no {what} {value[:40]!r}")
    return value


def _ids(document: dict[str, Any], field: str) -> list[str]:
    value = document.get(field)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError(400, f"{field} must be a list of ids")
    return value


def _only(document: dict[str, Any], allowed: set[str]) -> None:
    stray = sorted(set(document) - allowed)
    if stray:
        allowed_text = ", ".join(sorted(allowed))
        raise RequestError(400, f"unknown field {', '.join(stray)} (allowed: {allowed_text})")


def handlers(pages: Pages) -> dict[str, Handler]:
    """The handlers, by name, for one front end; it documents and registers them."""

    async def unknown(request: web.Request) -> web.Response:
        state = request.app[SERVER]
        cluster = request.query.get("cluster")
        if cluster is not None:
            if not ID.fullmatch(cluster):
                raise RequestError(404, f"no group of unknown faces {cluster[:40]!r}")
            one = await in_state(request, state.sightings.cluster, cluster)
            shown = await in_state(request, naming.shown_cluster, state.faces, one, pages.picture)
            return json_text({"clusters": [shown], "total": 1, "offset": 0, "limit": 1})
        offset = whole_number(request, "offset", 0, ANY_OFFSET)
        limit = whole_number(request, "limit", pages.groups, pages.most)
        best = whole_number(request, "best", pages.best, pages.most_best)
        listing = await in_state(
            request,
            naming.unknown_listing,
            state.faces,
            state.sightings,
            pages.picture,
            best,
            limit,
            offset,
        )
        remembering = state.recorder is not None  # false with --no-face-memory
        return json_text({**listing, "offset": offset, "limit": limit, "remembering": remembering})

    async def name_cluster(request: web.Request) -> web.Response:
        cluster = _id(request, "cluster", "group of unknown faces")
        document = await json_object(request)
        _only(document, {"name", "sightings"})
        name = document.get("name")
        if not isinstance(name, str) or not name.strip():
            raise RequestError(400, "type the person's name")
        chosen = _ids(document, "sightings") if "sightings" in document else None
        state = request.app[SERVER]
        named = await in_state(
            request, naming.name_cluster, state.faces, state.sightings, cluster, name, chosen
        )
        return json_text(naming.shown_named(named))

    async def merge(request: web.Request) -> web.Response:
        document = await json_object(request)
        _only(document, {"clusters"})
        clusters = _ids(document, "clusters")
        if len(clusters) < 2 or len(set(clusters)) != len(clusters):
            raise RequestError(400, "choose two or more different groups to merge")
        into = await in_state(request, request.app[SERVER].sightings.merge, clusters)
        return json_text({"cluster": into})

    async def forget_cluster(request: web.Request) -> web.Response:
        cluster = _id(request, "cluster", "group of unknown faces")
        removed = await in_state(request, request.app[SERVER].sightings.forget, cluster)
        return json_text({"removed": removed})

    async def move_out(request: web.Request) -> web.Response:
        sighting = _id(request, "sighting", "face")
        cluster = await in_state(request, request.app[SERVER].sightings.move_out, sighting)
        return json_text({"cluster": cluster})

    async def forget_sighting(request: web.Request) -> web.Response:
        sighting = _id(request, "sighting", "face")
        await in_state(request, request.app[SERVER].sightings.forget_sighting, sighting)
        return json_text({"removed": sighting})

    async def picture(request: web.Request) -> web.Response:
        sighting = _id(request, "sighting", "face")
        jpeg = await in_state(request, request.app[SERVER].sightings.picture, sighting)
        if jpeg is None:
            raise RequestError(404, f"no picture of face {sighting!r}")
        # Private: a face is personal data; a browser keeps it only for this user's views.
        headers = {"Cache-Control": "private, max-age=3600"}
        return web.Response(body=jpeg, content_type="image/jpeg", headers=headers)

    async def not_person(request: web.Request) -> web.Response:
        sighting = _id(request, "sighting", "face")
        state = request.app[SERVER]
        fixed = await in_state(request, naming.not_person, state.faces, state.sightings, sighting)
        return json_text(fixed)

    async def person_sightings(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        offset = whole_number(request, "offset", 0, ANY_OFFSET)
        limit = whole_number(request, "limit", pages.history, pages.most)
        found = await in_state(
            request, naming.history, request.app[SERVER].sightings, name, pages.picture, limit,
            offset,
        )  # fmt: skip
        return json_text({**found, "offset": offset, "limit": limit})

    return {
        "unknown": unknown,
        "name_cluster": name_cluster,
        "merge": merge,
        "forget_cluster": forget_cluster,
        "move_out": move_out,
        "forget_sighting": forget_sighting,
        "picture": picture,
        "not_person": not_person,
        "person_sightings": person_sightings,
    }
