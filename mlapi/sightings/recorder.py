"""Recording sightings off the request path: `offer` only puts what recognize kept of each
face on a bounded queue (never waiting; when it is full the sighting is dropped and
counted), and one writer thread encodes the pictures and hands the store a batch at a time.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass

from mlapi import attributes
from mlapi.images import encode_jpeg
from mlapi.result import Detection, Result
from mlapi.sightings.quality import Seen
from mlapi.sightings.settings import FaceMemory
from mlapi.stores import NewSighting, Sightings

log = logging.getLogger("mlapi.sightings")

QUEUE = 1024  # faces waiting for the writer; more are dropped (and counted)
BATCH = 256  # faces per write at most
PAUSE = 1.0  # seconds between writes at least: a file store rewrites its file on each
WRITE_SHARE = 10  # and at least ten times the last write's time
WARM_EVERY = 1.0  # seconds idle between checks that the listings are up to date


@dataclass(frozen=True)
class Offered:
    seen: float
    face: Detection
    route: str
    client: str
    source: str


class Recorder:
    def __init__(
        self, store: Sightings, memory: FaceMemory, pause: float = PAUSE, warm: bool = False
    ) -> None:
        """`warm`: when idle, keep the store's listings up to date (a server's listings)."""
        self.store, self.memory, self.pause, self.warm = store, memory, pause, warm
        self.counts: Counter[str] = Counter()  # kept, refused, dropped, repeated, failed
        self._queue: queue.Queue[Offered | None] = queue.Queue(QUEUE)
        self._pending = 0  # offered and not yet written (or failed)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="mlapi-sightings", daemon=True)
        self._thread.start()

    def offer(self, result: Result, route: str, client: str = "", source: str = "") -> None:
        """Queue the faces of `result` that recognize kept a memo of; never blocks."""
        now = time.time()
        for face in result.detections:
            seen = face.memo
            if not isinstance(seen, Seen):
                continue
            known = attributes.known_identity(face)
            if known is None and seen.quality.refusal(self.memory) is not None:
                self.counts["refused"] += 1  # a poor face is no unknown worth naming
                continue
            with self._lock:
                try:
                    self._queue.put_nowait(Offered(now, face, route, client, source))
                    self._pending += 1
                except queue.Full:
                    self.counts["dropped"] += 1

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything offered so far is written (tests, the CLI at exit)."""
        deadline = time.monotonic() + timeout
        while self._pending:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the writer."""
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=WARM_EVERY if self.warm else None)
            except queue.Empty:
                self._keep_warm()
                continue
            if first is None:
                return
            batch = [first]
            while len(batch) < BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._write(batch)
                    return
                batch.append(item)
            started = time.perf_counter()
            self._write(batch)
            # What arrives meanwhile is written in one go; a slow write (a file store of
            # 10,000 faces rewrites 10 MB) waits longer, so the writer takes at most about
            # a tenth of the time beside the requests it shares the interpreter with.
            time.sleep(max(self.pause, WRITE_SHARE * (time.perf_counter() - started)))

    def _keep_warm(self) -> None:
        try:
            self.store.warm()
        except Exception as exc:  # the store is away: the next listing says so
            log.debug("could not re-read the faces seen: %s", exc)

    def _write(self, batch: list[Offered]) -> None:
        try:
            new = [self._sighting(o) for o in batch]
            kept = self.store.record(new, self.memory.retention())
            self.counts["kept"] += kept
            self.counts["repeated"] += len(new) - kept
        except Exception as exc:  # the store is down: these are lost, the server goes on
            self.counts["failed"] += len(batch)
            log.warning("could not record %d face sightings: %s", len(batch), exc)
        finally:
            with self._lock:
                self._pending -= len(batch)

    @staticmethod
    def _sighting(o: Offered) -> NewSighting:
        seen: Seen = o.face.memo
        return NewSighting(
            seen=o.seen,
            model=seen.model,
            embedding=seen.embedding,
            box=o.face.box,
            quality=seen.quality.score,
            picture=encode_jpeg(seen.picture, 85),
            person=attributes.known_identity(o.face),
            similarity=float(o.face.attributes.get(attributes.SIMILARITY, 0.0)),
            source=o.source,
            route=o.route,
            client=o.client,
        )
