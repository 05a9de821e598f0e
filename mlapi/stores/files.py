"""TinyDB files that survive crashes and concurrent processes.

Writes go to a temp file that replaces the database atomically, so a process killed
mid-write leaves the old or the new file, never half of one. A lock file serialises
read-modify-write cycles between processes (the CLI adding users while a server runs).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tinydb import TinyDB
from tinydb.storages import Storage


def _private_temp(path: Path, data: bytes) -> str:
    """A synced temporary file beside `path` (mode 0600) holding `data`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp


def write_private(path: Path, data: bytes) -> None:
    """Write `data` atomically to a file only the owner can read (mode 0600)."""
    tmp = _private_temp(path, data)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def create_private(path: Path, data: bytes) -> None:
    """Create `path` (mode 0600) with `data` unless it exists: of several processes racing,
    exactly one creates it and the others keep its content."""
    tmp = _private_temp(path, data)
    try:
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # atomic, and fails when another process got there first
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


class AtomicJSONStorage(Storage):
    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def read(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        return json.loads(text) if text.strip() else None

    def write(self, data: dict[str, Any]) -> None:
        write_private(self.path, json.dumps(data, sort_keys=True).encode())


@contextlib.contextmanager
def locked_file(path: Path) -> Iterator[None]:
    """An exclusive inter-process lock on `path` (a `.lock` file beside it) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            # Temp files of a writer killed mid-write (they may hold face embeddings): no
            # other writer can be mid-write while this lock is held.
            for stale in path.parent.glob(f".{path.name}.*"):
                with contextlib.suppress(OSError):
                    stale.unlink()
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def locked_db(path: Path) -> Iterator[TinyDB]:
    """An open TinyDB holding an exclusive inter-process lock for the block's duration."""
    with locked_file(path), TinyDB(str(path), storage=AtomicJSONStorage) as db:
        yield db


class FileSnapshot:
    """A JSON file's content, re-read only when the file changed (a stat per call).

    Writers replace the file atomically, so reading without the lock is safe and every
    reader sees another process's change on its next call.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._data: dict[str, Any] = {}
        self._lock = threading.Lock()

    def read(self) -> tuple[dict[str, Any], bool]:
        """(content, whether it changed since the last call)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            with self._lock:
                changed, self._stamp, self._data = self._stamp is not None, None, {}
                return self._data, changed
        stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        with self._lock:
            if stamp == self._stamp:
                return self._data, False
            self._data = json.loads(self.path.read_text() or "{}")
            self._stamp = stamp
            return self._data, True
