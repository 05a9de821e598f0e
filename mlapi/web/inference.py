"""Engine work on the bounded inference pool, priced by each image's pixels."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from mlapi.errors import RequestError
from mlapi.images import pixel_cost
from mlapi.result import Result
from mlapi.web.state import (
    ENGINE,
    INFERENCE_MS,
    SERVER,
    STAGES,
    USER,
)

T = TypeVar("T")


async def in_pool(request: web.Request, fn: Callable[..., T], *args: Any, image: bytes) -> T:
    """Run blocking engine work on `image` on the bounded inference pool; 503 when the
    queue is full. The work is priced by the image's pixels (read from its header, see
    images.pixel_cost), never by its bytes: a small PNG of 16 megapixels waits behind
    camera frames like any big photo."""
    state = request.app[SERVER]
    if state.inflight >= state.capacity:
        raise RequestError(503, "server is busy; retry shortly")
    state.inflight += 1
    started = time.perf_counter()
    try:
        # Cheapest first: a camera's small frame does not wait behind big photos.
        return await state.engine.run_async(fn, *args, cost=pixel_cost(image))
    finally:
        state.inflight -= 1
        request[INFERENCE_MS] = (time.perf_counter() - started) * 1000


async def run_detection(
    request: web.Request,
    data: bytes,
    models: list[str] | None,
    options: dict[str, Any] | None,
    source: str = "",
) -> Result:
    """Detect on the pool; the faces recognition saw go to the memory of faces seen, with
    the route, the user and `source` (the camera the client named, if any)."""
    engine = request.app[ENGINE]
    plan = engine.make_plan(models, options)  # a bad detector or option: 400 before any work
    result = await in_pool(request, engine.run_here, data, plan, image=data)
    request[STAGES] = dict(result.stages)
    recorder = request.app[SERVER].recorder
    if recorder is not None:
        route = request.match_info.route.resource
        where = route.canonical if route is not None else request.path
        recorder.offer(result, where, request.get(USER) or "", source)
    return result
