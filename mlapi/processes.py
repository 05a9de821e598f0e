"""`mlapi serve --processes N`: N server processes on one port, each with its own engine.

Each child binds the port with SO_REUSEPORT, so the kernel spreads connections over them
and a child that dies or restarts never takes the listening socket of the others with it
(one accept socket handed to pre-forked children would be shared by all: a child killed
mid-accept, or a slow one, would affect the rest). The parent starts nothing but the
children: it forks them before any thread exists, restarts one that dies, and on SIGTERM
asks each to drain and waits for them.

What the children share: their ready flags (a shared memory page, so /ready is 200 only
when every child is warm) and their metrics (each publishes a snapshot every second; a
scrape sums them). Everything else that must be shared (users, keys, password stamps,
failed logins, the gallery) lives in the stores, which every process re-reads on change.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import mmap
import os
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import cast

from mlapi.metrics import Snapshot, merge
from mlapi.state.files import write_private

log = logging.getLogger("mlapi.processes")
PUBLISH_SECONDS = 1.0
PR_SET_PDEATHSIG = 1  # prctl option


class Group:
    """What the processes of one server share; `slot` is this process's place in it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.slot = 0
        self._flags = mmap.mmap(-1, size)  # anonymous and shared: inherited across fork
        self.folder = Path(tempfile.mkdtemp(prefix="mlapi-processes-"))

    def set_ready(self, ready: bool, slot: int | None = None) -> None:
        self._flags[self.slot if slot is None else slot] = int(ready)

    def is_ready(self, slot: int) -> bool:
        return bool(self._flags[slot])

    def all_ready(self) -> bool:
        return all(self._flags[: self.size])

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


def supervise(group: Group, child: Callable[[Group], None]) -> int:
    """Fork `group.size` children running `child(group)`; restart any that dies; on
    SIGTERM or SIGINT drain them all. The exit status: 0, or a child's failure to start."""
    children: dict[int, int] = {}  # pid → slot
    stopping = False

    def start(slot: int) -> None:
        group.set_ready(False, slot)
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the child: serve until told to stop, never return to the parent's code
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
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # each drains its requests in flight

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    for slot in range(group.size):
        start(slot)
    failure = 0
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        slot = children.pop(pid)
        was_ready = group.is_ready(slot)
        group.set_ready(False, slot)
        code = os.waitstatus_to_exitcode(status)
        if stopping:
            continue
        if code > 0 and not was_ready:  # a missing model, a busy port: a restart won't help
            log.error("process %d exited with %d on start; stopping the server", slot, code)
            failure = code
            stop(signal.SIGTERM, None)
            continue
        log.warning("process %d (pid %d) exited with %d; starting it again", slot, pid, code)
        start(slot)
    shutil.rmtree(group.folder, ignore_errors=True)
    return failure
