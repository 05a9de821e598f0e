"""Failed logins in a small private file, so every process (and a restart) sees them: the
embedded `LoginAttempts` store.

At most `limit` failed logins per window per user+address, and four times that per
address. An attempt counts as failed from the moment it starts and is forgiven only when it
succeeds, so a burst of concurrent guesses is refused like a sequence of them. Keys are
digests (a 4 MiB username costs 64 bytes) and at most `max_keys` are kept.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

from mlapi.stores.files import locked_file, write_private

Failures = dict[str, list[float]]


def keys(user: str, address: str) -> tuple[str, str]:
    """(user+address, address) as digests: what the limiter counts by."""
    pair = hashlib.sha256(f"{address}\0{user}".encode(errors="replace")).hexdigest()
    return pair, hashlib.sha256(address.encode(errors="replace")).hexdigest()


def forget_stale(failures: Failures, now: float, window: float, max_keys: int) -> None:
    """Drop failures older than the window, then the stalest keys beyond `max_keys`."""
    for key in list(failures):
        failures[key] = [t for t in failures[key] if t > now - window]
        if not failures[key]:
            del failures[key]
    if len(failures) >= max_keys:
        stalest = sorted(failures, key=lambda k: failures[k][-1])
        for key in stalest[: len(failures) - max_keys + max(max_keys // 10, 1)]:
            del failures[key]


class FileLoginAttempts:
    def __init__(
        self, path: Path, limit: int = 5, window: float = 300.0, max_keys: int = 10_000
    ) -> None:
        self.path, self.limit, self.window, self.max_keys = path, limit, window, max_keys

    def _read(self) -> Failures:
        try:
            data = json.loads(self.path.read_bytes() or b"{}")
        except (FileNotFoundError, ValueError):
            return {}  # a damaged file forgets failures rather than locking everyone out
        return data if isinstance(data, dict) else {}

    def _write(self, failures: Failures) -> None:
        if not failures:  # nothing to remember: nothing kept
            self.path.unlink(missing_ok=True)
            return
        write_private(self.path, json.dumps(failures, separators=(",", ":")).encode())

    def attempt(self, user: str, address: str) -> int:
        now = time.time()  # wall clock: shared by processes and kept across restarts
        pair, addr = keys(user, address)
        with locked_file(self.path):
            failures = self._read()
            forget_stale(failures, now, self.window, self.max_keys)
            waits = [
                int(failures[key][0] + self.window - now) + 1
                for key, limit in ((pair, self.limit), (addr, self.limit * 4))
                if len(failures.get(key, ())) >= limit
            ]
            if waits:
                return max(waits)
            for key in (pair, addr):
                failures.setdefault(key, []).append(now)
            self._write(failures)
            return 0

    def succeeded(self, user: str, address: str) -> None:
        pair, addr = keys(user, address)
        with locked_file(self.path):
            failures = self._read()
            failures.pop(pair, None)
            if failures.get(addr):
                failures[addr].pop()  # this attempt was not a failure after all
                if not failures[addr]:
                    del failures[addr]
            self._write(failures)
