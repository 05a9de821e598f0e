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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import platformdirs
from tinydb import TinyDB
from tinydb.storages import Storage

DATA_ENV = "MLAPI_DATA_DIR"


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_ENV) or platformdirs.user_data_dir("mlapi"))


def write_private(path: Path, data: bytes) -> None:
    """Write `data` atomically to a file only the owner can read (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
def locked_db(path: Path) -> Iterator[TinyDB]:
    """An open TinyDB holding an exclusive inter-process lock for the block's duration."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with TinyDB(str(path), storage=AtomicJSONStorage) as db:
                yield db
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
