"""Signed-in console browsers in a small private TinyDB file: the embedded
`ConsoleSessions` store. Rows hold the digest of each session's secret, never the secret."""

from __future__ import annotations

import secrets
import time
from pathlib import Path

from tinydb import Query

from mlapi.config import StoreSettings
from mlapi.stores import ConsoleSession, rules
from mlapi.stores.files import FileSnapshot, locked_db

SESSION_LIFETIME = 12 * 3600.0  # seconds a console sign-in lasts (a working day)


def new_session() -> tuple[str, str]:
    """(secret, CSRF token): 256 random bits each."""
    return secrets.token_urlsafe(32), secrets.token_urlsafe(32)


class FileSessions:
    def __init__(
        self,
        path: Path,
        lifetime: float = SESSION_LIFETIME,
        max_per_user: int = StoreSettings.max_sessions_per_user,
    ) -> None:
        self.path, self.lifetime, self.max_per_user = path, lifetime, max_per_user
        self._snapshot = FileSnapshot(path)

    def open(self, user: str, stamp: str) -> tuple[str, str]:
        secret, csrf = new_session()
        now = time.time()
        with locked_db(self.path) as db:
            table = db.table("sessions")
            table.remove(Query().expires < now)  # the file holds live sessions only
            table.insert(
                {
                    "digest": rules.digest(secret),
                    "user": user,
                    "csrf": csrf,
                    "stamp": stamp,
                    "expires": now + self.lifetime,
                }
            )
            # Beyond the cap, the user's oldest sessions end.
            mine = sorted(table.search(Query().user == user), key=lambda r: r["expires"])
            if len(mine) > self.max_per_user:
                oldest = mine[: len(mine) - self.max_per_user]
                table.remove(doc_ids=[r.doc_id for r in oldest])
        return secret, csrf

    def find(self, secret: str) -> ConsoleSession | None:
        digest = rules.digest(secret)
        rows = self._snapshot.read()[0].get("sessions", {}).values()
        for row in rows:
            if row["digest"] == digest and row["expires"] > time.time():
                return ConsoleSession(row["user"], row["csrf"], row["stamp"], row["expires"])
        return None

    def close(self, secret: str) -> None:
        if self.path.exists():
            with locked_db(self.path) as db:
                db.table("sessions").remove(Query().digest == rules.digest(secret))
