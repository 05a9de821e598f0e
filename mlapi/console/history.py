"""The last minutes of the server's counters, sampled every few seconds for the console's
charts: the same counters /metrics shows (every process's, with --processes)."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from mlapi.metrics import Snapshot

EVERY = 5.0  # seconds between samples
KEPT = 120  # samples: the last ten minutes


class History:
    def __init__(self, kept: int = KEPT) -> None:
        self.points: deque[dict[str, Any]] = deque(maxlen=kept)

    def record(self, snap: Snapshot, at: float | None = None) -> None:
        self.points.append(point(snap, time.time() if at is None else at))

    def rows(self) -> list[dict[str, Any]]:
        return list(self.points)


def point(snap: Snapshot, at: float) -> dict[str, Any]:
    """One sample: totals so far (the page charts the differences between samples)."""
    queue = snap["queue"]
    return {
        "t": round(at, 3),
        "requests": sum(n for *_, n in snap["requests"]),
        "rejected": sum(n for _, n in snap["rejected"]),
        "waiting": queue.get("waiting", 0),
        "inference": queue.get("inference", 0),
        "routes": {route: [n, round(s, 6)] for route, n, s in snap.get("latency", [])},
    }
