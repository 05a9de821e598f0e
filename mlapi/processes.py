"""`mlapi serve --processes N`: N server processes on one port, each with its own engine.

Each child binds the port with SO_REUSEPORT, so the kernel spreads connections over them
and a child that dies or restarts never takes the listening socket of the others with it
(one accept socket handed to pre-forked children would be shared by all: a child killed
mid-accept, or a slow one, would affect the rest). The parent starts nothing but the
children: it forks them before any thread exists, restarts one that dies, and on SIGTERM
asks each to drain and waits for them.

What the children share: their ready flags and heartbeats (a shared memory page, so
/ready is 200 only when every child is warm and answering) and their metrics (each
publishes a snapshot every second; a scrape sums them). Everything else that must be
shared (users, keys, password stamps, failed logins, the gallery) lives in the stores,
which every process re-reads on change.

A child whose event loop stops (SIGSTOP, a deadlock) stops beating: the parent kills it
(SIGKILL) once its heartbeat is STALE_SECONDS old and starts another. A child that cannot
reach the database exits with EX_TEMPFAIL and is started again after a growing pause
(1, 2, 4 … BACKOFF_MAX seconds): a database outage never stops the server, while a failure
a restart cannot fix (a busy port) on a first start still does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import mmap
import os
import shutil
import signal
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

from mlapi import notify
from mlapi.metrics import Snapshot, merge
from mlapi.stores.files import write_private

log = logging.getLogger("mlapi.processes")
PUBLISH_SECONDS = 1.0
PR_SET_PDEATHSIG = 1  # prctl option
EX_TEMPFAIL = 75  # a child's exit status for "the database does not answer": try again later
BEAT_SECONDS = 0.5  # how often a child's event loop writes its heartbeat
STALE_SECONDS = 3.0  # a heartbeat this old: the child is stuck (not ready; killed)
POLL_SECONDS = 0.2  # how often the parent looks at its children
BACKOFF_MAX = 30.0  # the longest pause before starting again a child that failed to start


class Group:
    """What the processes of one server share; `slot` is this process's place in it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.slot = 0
        # One ready byte per slot, then (8-aligned) one heartbeat per slot: the time.monotonic()
        # of its event loop's last beat (a clock every process of the machine shares), 0 for
        # "not beating" (starting, or stopping). Anonymous and shared: inherited across fork.
        self._beats = -(-size // 8) * 8
        self._flags = mmap.mmap(-1, self._beats + 8 * size)
        self.folder = Path(tempfile.mkdtemp(prefix="mlapi-processes-"))

    def set_ready(self, ready: bool, slot: int | None = None) -> None:
        self._flags[self.slot if slot is None else slot] = int(ready)

    def is_ready(self, slot: int) -> bool:
        return bool(self._flags[slot])

    def all_ready(self) -> bool:
        """Every process warm, and none stuck."""
        now = time.monotonic()
        return all(self._flags[: self.size]) and not any(
            self.stale(slot, now) for slot in range(self.size)
        )

    def beat(self, slot: int | None = None, at: float | None = None) -> None:
        """This process's loop is alive (`at` 0: it stops beating, and is not watched)."""
        slot = self.slot if slot is None else slot
        struct.pack_into(
            "d", self._flags, self._beats + 8 * slot, time.monotonic() if at is None else at
        )

    def last_beat(self, slot: int) -> float:
        """The slot's last heartbeat, 0 if it is not beating. Read until two reads agree: an
        8-byte write is not promised to be atomic, and a torn read must not kill a child."""
        offset = self._beats + 8 * slot
        seen = struct.unpack_from("d", self._flags, offset)[0]
        while (again := struct.unpack_from("d", self._flags, offset)[0]) != seen:
            seen = again
        return float(seen)

    def stale(self, slot: int, now: float | None = None) -> bool:
        """The slot has beaten, but not for STALE_SECONDS: its loop is stuck."""
        last = self.last_beat(slot)
        return last > 0 and (time.monotonic() if now is None else now) - last > STALE_SECONDS

    async def heartbeat(self) -> None:
        """Beat from this process's event loop until cancelled (then: not beating)."""
        try:
            while True:
                self.beat()
                await asyncio.sleep(BEAT_SECONDS)
        finally:
            self.beat(at=0.0)

    def _path(self, slot: int) -> Path:
        return self.folder / f"metrics-{slot}.json"

    def publish(self, snapshot: Snapshot) -> None:
        write_private(self._path(self.slot), json.dumps(snapshot).encode())

    def previous(self) -> Snapshot | None:
        """What this slot's last process published: a restarted child continues its counts,
        so the server's counters never go backwards."""
        try:
            return cast(Snapshot, json.loads(self._path(self.slot).read_bytes()))
        except (OSError, ValueError):
            return None

    def gather(self, mine: Snapshot) -> Snapshot:
        """The whole server: this process live, the others as last published."""
        snapshots = [mine]
        for slot in range(self.size):
            if slot == self.slot:
                continue
            try:
                other = cast(Snapshot, json.loads(self._path(slot).read_bytes()))
            except (OSError, ValueError):
                other = merge([])
            snapshots.append(other)
        return {**merge(snapshots), "ready": self.all_ready()}


def auto_count(workers: int) -> int:
    """One process per `workers` cores: every core busy, none shared by two processes."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def die_with(parent: int) -> None:
    """A child is told SIGTERM (and drains) when its parent dies, even by SIGKILL: no
    orphan keeps serving the port (Linux; elsewhere the parent's SIGTERM is all there is)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # it died before the request was made
        os._exit(0)


def backoff(failures: int) -> float:
    """The pause before starting again a child that failed to start `failures` times in a
    row: 1, 2, 4 … BACKOFF_MAX seconds."""
    return float(min(BACKOFF_MAX, 2 ** max(0, failures - 1)))


def supervise(group: Group, child: Callable[[Group], None]) -> int:
    """Fork `group.size` children running `child(group)`; restart any that dies (at once if
    it had been ready, else after a growing pause), kill any whose heartbeat is stale; on
    SIGTERM or SIGINT drain them all. The exit status: 0, or a child's failure to start
    that a restart cannot fix (any status but 0 and EX_TEMPFAIL before it was ready)."""
    children: dict[int, int] = {}  # pid → slot
    due: dict[int, float] = {}  # slot → when to start it again
    killed: set[int] = set()  # stuck children told SIGKILL, not yet reaped
    failures = [0] * group.size  # failed starts in a row, per slot
    stopping = False
    failure = 0

    def start(slot: int) -> None:
        group.set_ready(False, slot)
        group.beat(slot, at=0.0)  # not watched until its loop beats
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: serve until told to stop, never return to the parent's code
            notify.detach()  # only the parent talks to systemd
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            die_with(parent)
            group.slot = slot
            status = 0
            try:
                child(group)
            except SystemExit as exc:
                status = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                log.exception("process %d failed", slot)
                status = 1
            finally:
                logging.shutdown()
                os._exit(status)
        children[pid] = slot
        log.info("process %d started (pid %d)", slot, pid)

    def stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        if not stopping:
            notify.notify("STOPPING=1")
        stopping = True
        due.clear()
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # each drains its requests in flight

    def ended(pid: int, status: int) -> None:
        nonlocal failure
        slot = children.pop(pid)
        killed.discard(pid)
        was_ready = group.is_ready(slot)
        group.set_ready(False, slot)
        group.beat(slot, at=0.0)
        code = os.waitstatus_to_exitcode(status)
        if stopping:
            return
        if code > 0 and code != EX_TEMPFAIL and not was_ready:
            # A missing model, a busy port: a restart won't help.
            log.error("process %d exited with %d on start; stopping the server", slot, code)
            failure = code
            stop(signal.SIGTERM, None)
            return
        failures[slot] = 0 if was_ready else failures[slot] + 1
        pause = backoff(failures[slot]) if failures[slot] else 0.0
        why = "could not reach the database" if code == EX_TEMPFAIL else f"exited with {code}"
        log.warning("process %d (pid %d) %s; starting it again in %g s", slot, pid, why, pause)
        due[slot] = time.monotonic() + pause

    def watch() -> None:
        now = time.monotonic()
        for pid, slot in children.items():
            if pid not in killed and group.stale(slot, now):
                log.error(
                    "process %d (pid %d) has not answered for %.1f s; killing it",
                    slot, pid, now - group.last_beat(slot),
                )  # fmt: skip
                killed.add(pid)  # stale (so not ready) until its end restarts it
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        for slot, when in list(due.items()):
            if when <= now and not stopping and due.pop(slot, None) is not None:
                start(slot)

    speaking = notify.enabled()
    interval = notify.watchdog_interval()
    told_ready, next_ping = False, 0.0

    def tell_systemd() -> None:
        # READY=1 once every process is warm; WATCHDOG=1 from this loop, which watches the
        # children's heartbeats (a stuck child is killed here, a stuck parent stops pinging).
        nonlocal told_ready, next_ping
        if not told_ready and not stopping and group.all_ready():
            notify.notify("READY=1")
            told_ready = True
        now = time.monotonic()
        if interval is not None and now >= next_ping:
            notify.notify("WATCHDOG=1")
            next_ping = now + interval

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(group.size):
        start(slot)
    while children or due:
        if speaking:
            tell_systemd()
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            pid = 0
        if pid in children:
            ended(pid, status)
            continue  # reap every child that ended before sleeping
        watch()
        time.sleep(POLL_SECONDS)
    shutil.rmtree(group.folder, ignore_errors=True)
    return failure
