"""The inference pool: cheapest waiting job first, so a camera's small frame does not wait
behind big photos (Frigate gives up after 0.1 s), with ageing so a big job still runs.

A job's cost is what it is known by before decoding: its pixel count, read from the image
header. Its priority is megapixels × 5 minus seconds waited × 20: a 2 MP photo that has
waited half a second goes before a fresh tile.

An express worker beside them runs only small jobs (a camera's frame, a face crop), so
one never waits for a big photo to finish: with two clients posting 1080p photos a 320 px
tile otherwise waits half a photo's time for a worker.

A job can ask whether it may use every core (`may_use_every_core()`): when it is the only
job running with none waiting, or when it is the express worker's; otherwise jobs use one
core each.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

AGE_WEIGHT = 20.0  # priority points per second waited
COST_WEIGHT = 5.0 / 1_000_000  # priority points per pixel
REGULAR_NICENESS = 10  # how much less CPU priority the regular workers' threads get


_lane = threading.local()


def running_alone() -> bool:
    """Whether the pool job on this thread is now the only one running, with none waiting
    (read without the lock: a stale answer costs a little speed, never a wrong result)."""
    pool: ShortestFirst | None = getattr(_lane, "pool", None)
    return pool is not None and pool._running == 1 and not pool._jobs


def may_use_every_core() -> bool:
    """Whether the pool job on this thread may spread over every core now: it runs alone, or
    it is the express worker's (a small job at normal priority, which the niced regular
    workers yield to for the few milliseconds it takes)."""
    return running_alone() or getattr(_lane, "express", False)


@dataclass
class _Job:
    cost: float
    seq: int
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    future: Future[Any] = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)

    def priority(self, now: float) -> tuple[float, int]:
        return self.cost * COST_WEIGHT - (now - self.enqueued) * AGE_WEIGHT, self.seq


class ShortestFirst:
    def __init__(self, workers: int, name: str = "mlapi-infer", express_cost: float = 0) -> None:
        """`workers` threads run any job; with `express_cost`, one more runs only jobs
        costing at most that."""
        self._jobs: list[_Job] = []
        self._ready = threading.Condition()
        self._seq = itertools.count()
        self._closed = False
        self._running = 0
        self._threads = [
            threading.Thread(target=self._work, args=(None,), name=f"{name}_{i}", daemon=True)
            for i in range(workers)
        ]
        if express_cost > 0:
            self._threads.append(
                threading.Thread(
                    target=self._work, args=(express_cost,), name=f"{name}_express", daemon=True
                )
            )
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., Any], *args: Any, cost: float = 0.0) -> Future[Any]:
        job = _Job(cost, next(self._seq), fn, args)
        with self._ready:
            if self._closed:
                raise RuntimeError("the inference pool is shut down")
            self._jobs.append(job)
            self._ready.notify_all()  # the express worker may be the one that can take it
        return job.future

    def _next(self, limit: float | None) -> _Job | None:
        with self._ready:
            while True:
                eligible = [j for j in self._jobs if limit is None or j.cost <= limit]
                if eligible:
                    break
                if self._closed:
                    return None
                self._ready.wait()
            now = time.monotonic()
            job = min(eligible, key=lambda j: j.priority(now))  # short: the queue is bounded
            self._jobs.remove(job)
            self._running += 1
            return job

    def _work(self, limit: float | None) -> None:
        _lane.pool = self
        _lane.express = limit is not None
        if limit is None and REGULAR_NICENESS:
            # The kernel then gives the express worker (and the event loop) most of a core
            # when they contend with big jobs; alone, a job still gets all it can use.
            with contextlib.suppress(OSError, AttributeError):
                tid = threading.get_native_id()
                os.setpriority(
                    os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + REGULAR_NICENESS
                )
        while (job := self._next(limit)) is not None:
            if not job.future.set_running_or_notify_cancel():
                with self._ready:
                    self._running -= 1
                continue
            try:
                job.future.set_result(job.fn(*job.args))
            except BaseException as exc:  # handed to whoever waits on the future
                job.future.set_exception(exc)
            finally:
                with self._ready:
                    self._running -= 1

    def shutdown(self, wait: bool = True) -> None:
        """Finish the jobs already submitted, then stop the threads."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()
        if wait:
            for thread in self._threads:
                thread.join()
