"""The server's state: admission (slots, the waiting line), counters, the pools that keep
blocking work off the event loop, and the keys under which handlers find them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from aiohttp import web

from mlapi import metrics
from mlapi.auth import TokenIssuer
from mlapi.config import ServerConfig
from mlapi.engine import Engine
from mlapi.errors import RequestError
from mlapi.processes import Group
from mlapi.sightings.recorder import Recorder
from mlapi.sightings.settings import FaceMemory
from mlapi.stores import Stores

T = TypeVar("T")


class ServerState:
    def __init__(
        self,
        engine: Engine,
        stores: Stores,
        config: ServerConfig,
        group: Group | None = None,
        memory: FaceMemory | None = None,
    ) -> None:
        self.engine, self.config, self.group = engine, config, group
        self.memory = memory or FaceMemory()
        # Counts a restarted process of a group continues from (see mlapi.processes).
        self.base = group.previous() if group else None
        self.users, self.limiter = stores.accounts, stores.logins
        self.sessions, self.faces, self.plates = stores.sessions, stores.faces, stores.plates
        self.sightings = stores.sightings
        # The faces recognition sees, written off the request path (see mlapi.sightings).
        self.recorder = (
            None if self.memory.no_face_memory else Recorder(self.sightings, self.memory, warm=True)
        )
        engine.runtime.remember_faces = self.recorder is not None
        engine.runtime.face_gate = self.memory
        self.key_uses: dict[str, float] = {}  # key id → last use, until the next flush
        self.tokens = TokenIssuer(stores.secret.get(), config.token_lifetime)
        self.hashing = asyncio.Semaphore(2)  # argon2 costs ~64 MiB and ~0.1 s each
        self.keyless_bodies = asyncio.Semaphore(config.max_keyless_bodies)
        # Work that grows with the input but is not inference (parsing a big JSON body,
        # reading and writing the gallery) runs here, never on the event loop.
        self.io = ThreadPoolExecutor(2, thread_name_prefix="mlapi-io")
        # The stores' calls (a file's snapshot, or a database round trip) run here: many
        # small ones at once, never on the event loop.
        self.store_calls = ThreadPoolExecutor(8, thread_name_prefix="mlapi-stores")
        self.started = time.monotonic()
        self.ready = False
        self.inflight = 0  # requests on the inference pool
        self.admitted = 0  # requests past admission (reading a body or on the pool)
        self.waiting: deque[asyncio.Future[None]] = deque()  # oldest first; headers only
        self.requests: Counter[tuple[str, str, int]] = Counter()  # (method, route, status)
        self.latency: dict[str, tuple[int, float]] = {}  # route → (answered, seconds)
        self.rejected: Counter[int] = Counter()  # refused by admission or limits, by status

    async def admit(self) -> None:
        """A slot now, or in turn (oldest first) within max_wait; 503 for real overload."""
        if self.admitted < self.capacity and not self.waiting:
            self.admitted += 1
            return
        if len(self.waiting) >= self.config.max_waiting:
            raise RequestError(503, "server is busy; retry shortly")
        turn = asyncio.get_running_loop().create_future()
        self.waiting.append(turn)
        try:
            async with asyncio.timeout(self.config.max_wait):
                await turn  # a finishing request hands its slot over (see release)
        except TimeoutError:
            if turn.done() and not turn.cancelled():
                return  # handed a slot in the same pass as the deadline: it is ours
            raise RequestError(503, "server is busy; retry shortly") from None
        except BaseException:
            if turn.done() and not turn.cancelled():  # handed a slot just as we gave up
                self.release()
            raise
        finally:
            with contextlib.suppress(ValueError):
                self.waiting.remove(turn)

    def release(self) -> None:
        """Hand the slot to the oldest waiting request, or free it."""
        while self.waiting:
            turn = self.waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.admitted -= 1

    @property
    def capacity(self) -> int:
        return self.engine.config.workers + self.config.max_queue

    def snapshot(self) -> metrics.Snapshot:
        """This process's counters (continuing a predecessor's in a group)."""
        live: metrics.Snapshot = {
            "requests": [(*key, n) for key, n in self.requests.items()],
            "rejected": list(self.rejected.items()),
            "queue": {
                "waiting": len(self.waiting),
                "admitted": self.admitted,
                "inference": self.inflight,
            },
            "inference": [(n, r, s) for n, (r, s) in self.engine.timings.snapshot().items()],
            "latency": [(route, n, spent) for route, (n, spent) in self.latency.items()],
            "ready": self.ready,
            "sightings": list(self.recorder.counts.items()) if self.recorder else [],
        }
        if self.base is None:
            return metrics.merge([live])
        merged = metrics.merge([live, {**self.base, "queue": {}, "ready": True}])
        return {**merged, "ready": self.ready}

    def whole(self) -> metrics.Snapshot:
        """Every process's counters (this one live), as /metrics shows them."""
        mine = self.snapshot()
        return self.group.gather(mine) if self.group else mine

    def flush_key_uses(self) -> None:
        used, self.key_uses = self.key_uses, {}
        if used:
            self.users.keys_used(used)

    def everyone_ready(self) -> bool:
        return self.ready and (self.group is None or self.group.all_ready())


async def in_state(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    """A call to the stores (users, keys, failed logins) off the event loop."""
    pool = request.app[SERVER].store_calls
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


async def off_loop(request: web.Request, fn: Callable[..., T], *args: Any) -> T:
    """Blocking work that grows with its input (not inference) on the server's small I/O
    pool, so the event loop keeps answering (e.g. /health) meanwhile."""
    pool = request.app[SERVER].io
    return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)


ENGINE = web.AppKey("engine", Engine)
SERVER = web.AppKey("server", ServerState)  # the server's state
USER: web.RequestKey[str | None] = web.RequestKey("user", str)  # None: anonymous
STARTED = web.RequestKey("started", float)
INFERENCE_MS = web.RequestKey("inference_ms", float)
STAGES: web.RequestKey[dict[str, float]] = web.RequestKey("stages", dict)  # detector → s
AUTHENTICATED = web.RequestKey("authenticated", bool)
CLIENT: web.RequestKey[str | None] = web.RequestKey("client", str)  # see client()
ADMITTED = web.RequestKey("admitted", bool)  # holds an admission slot, to give back
WARMING = web.AppKey("warming", asyncio.Task)
PUBLISHING = web.AppKey("publishing", asyncio.Task)
RECORDING = web.AppKey("recording", asyncio.Task)  # writes keys' last use
