"""The console's Plates page: the known plates (names for plates, and for the plates a
pattern matches) listed, added and forgotten, as `/api/v1/plates` does for API clients."""

from __future__ import annotations

from aiohttp import web

from mlapi.console.access import signed_in_only
from mlapi.dialects.native.routes import PLATE_BODY, add_plate, shown
from mlapi.web.kit import SERVER, in_state, json_text


@signed_in_only("the known plates: {plates: [{name, plate} or {name, pattern}]}")
async def plates(request: web.Request) -> web.Response:
    known = await in_state(request, request.app[SERVER].plates.known)
    return json_text({"plates": [shown(k) for k in known]})


@signed_in_only(
    "name a plate, or every plate a regular expression matches in full; each refusal a "
    "4xx in words",
    body=PLATE_BODY,
)
async def add_known_plate(request: web.Request) -> web.Response:
    return json_text(await add_plate(request))


@signed_in_only("forget a name's known plates and patterns: {name, removed: N}; 404 if none")
async def remove_plate(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    removed = await in_state(request, request.app[SERVER].plates.remove, name)
    return json_text({"name": name, "removed": removed})
