"""The stores in PostgreSQL (`--database postgresql://…`): what replicas share.

Each store keeps what it must answer per request in memory, checked against the database:
an API key or a password stamp is re-read after KEY_FRESH seconds, so a revoked key or a
new password is refused by every replica within a second; the gallery (pg_gallery.py)
re-reads its samples when a version counter that every change bumps has moved. When the
database does not answer (see database.py), a key or stamp read within TRUST_OFFLINE
seconds is still trusted (detection goes on for clients just seen); everything else is
StoreUnavailable, a 503 with Retry-After.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from mlapi.config import StoreSettings
from mlapi.errors import (
    PlateTaken,
    StoreUnavailable,
    UnknownPlate,
    UserError,
)
from mlapi.stores import ApiKey, ConsoleSession, KnownPlate, rules, too_many_keys
from mlapi.stores.console_sessions import SESSION_LIFETIME, new_session
from mlapi.stores.database import (
    Database,
)
from mlapi.stores.logins import keys as login_keys
from mlapi.stores.matching import PlateIndex

KEY_FRESH = 1.0  # seconds a checked key or stamp is used without asking the database again
TRUST_OFFLINE = 60.0  # seconds it is still trusted while the database does not answer
T = TypeVar("T")


class Remembered:
    """Answers read from the database, with the time they were read."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Any, float]] = {}
        self._lock = threading.Lock()
        self._failed = -math.inf  # when a read last found the database unavailable

    def get(self, key: str, read: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
        if seen and now - seen[1] < KEY_FRESH:
            return seen[0]  # type: ignore[no-any-return]
        if seen and now - seen[1] < TRUST_OFFLINE and now - self._failed < KEY_FRESH:
            return seen[0]  # type: ignore[no-any-return]  # it failed a moment ago: not yet
        try:
            value = read()
        except StoreUnavailable:
            self._failed = time.monotonic()
            if seen and now - seen[1] < TRUST_OFFLINE:
                return seen[0]  # type: ignore[no-any-return]
            raise
        with self._lock:
            if value is None:
                self._seen.pop(key, None)  # unknown: asked again next time
            else:
                if len(self._seen) > 10_000:
                    self._seen.clear()
                self._seen[key] = (value, now)
        return value

    def forget(self) -> None:
        with self._lock:
            self._seen.clear()


class PgAccounts:
    def __init__(
        self,
        db: Database,
        passwords: rules.Passwords | None = None,
        max_keys: int = StoreSettings.max_keys_per_user,
    ) -> None:
        self.db = db
        self.passwords = passwords or rules.Passwords()
        self.max_keys = max_keys
        self._keys = Remembered()
        self._stamps = Remembered()

    # -- users ---------------------------------------------------------------------------
    def add(self, name: str, password: str) -> None:
        rules.user_name(name)
        digest = self.passwords.hash(rules.password(password))
        with self.db.connection() as conn:
            added = conn.execute(
                "INSERT INTO mlapi_users VALUES (%s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (name, digest, time.time()),
            ).fetchone()
        if added is None:
            raise UserError(f"user {name!r} already exists")

    def set_password(self, name: str, password: str) -> None:
        digest = self.passwords.hash(rules.password(password))
        with self.db.connection() as conn:
            sql = "UPDATE mlapi_users SET hash = %s WHERE name = %s RETURNING 1"
            if conn.execute(sql, (digest, name)).fetchone() is None:
                raise UserError(f"no user named {name!r}")
        self._stamps.forget()

    def remove(self, name: str) -> None:
        with self.db.connection() as conn:
            sql = "DELETE FROM mlapi_users WHERE name = %s RETURNING 1"  # keys cascade
            if conn.execute(sql, (name,)).fetchone() is None:
                raise UserError(f"no user named {name!r}")
        self._stamps.forget()
        self._keys.forget()

    def names(self) -> list[str]:
        with self.db.connection() as conn:
            return [r[0] for r in conn.execute("SELECT name FROM mlapi_users ORDER BY name")]

    def exists(self, name: str) -> bool:
        return self._hash(name) is not None

    def _hash(self, name: str) -> str | None:
        with self.db.connection() as conn:
            row = conn.execute("SELECT hash FROM mlapi_users WHERE name = %s", (name,)).fetchone()
        return str(row[0]) if row else None

    def stamp(self, name: str) -> str | None:
        def read() -> str | None:
            stored = self._hash(name)
            return rules.stamp(stored) if stored else None

        return self._stamps.get(name, read)

    def verify(self, name: str, password: str) -> bool:
        stored = self._hash(name)
        if not self.passwords.verify(stored, password):
            return False
        if stored is not None and self.passwords.needs_rehash(stored):
            with self.db.connection() as conn:
                sql = "UPDATE mlapi_users SET hash = %s WHERE name = %s"
                conn.execute(sql, (self.passwords.hash(password), name))
        return True

    # -- API keys ------------------------------------------------------------------------
    def create_key(self, user: str, name: str) -> str:
        key_id, secret = rules.new_key()
        with self.db.connection() as conn, conn.transaction():
            # The user's row, locked: one replica at a time counts and adds this user's keys.
            sql = "SELECT 1 FROM mlapi_users WHERE name = %s FOR NO KEY UPDATE"
            if conn.execute(sql, (user,)).fetchone() is None:
                raise UserError(f"no user named {user!r}")
            added = conn.execute(
                "INSERT INTO mlapi_keys (id, name, username, sha256, created) "
                "SELECT %s, %s, %s, %s, %s "
                "WHERE (SELECT count(*) FROM mlapi_keys WHERE username = %s) < %s RETURNING 1",
                (key_id, name, user, rules.digest(secret), time.time(), user, self.max_keys),
            ).fetchone()
        if added is None:
            raise too_many_keys(user, self.max_keys)
        return secret

    def api_keys(self) -> list[ApiKey]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT id, name, username, created, last_used FROM mlapi_keys ORDER BY created"
            ).fetchall()
        return [ApiKey(*row) for row in rows]

    def revoke_key(self, key_id: str) -> None:
        with self.db.connection() as conn:
            sql = "DELETE FROM mlapi_keys WHERE id = %s RETURNING 1"
            if conn.execute(sql, (key_id,)).fetchone() is None:
                raise UserError(f"no API key with id {key_id!r}")
        self._keys.forget()

    def key_user(self, secret: str) -> str | None:
        key_id = rules.key_id(secret)
        if key_id is None:
            return None

        def read() -> str | None:
            with self.db.connection() as conn:
                row = conn.execute(
                    "SELECT username, sha256 FROM mlapi_keys WHERE id = %s", (key_id,)
                ).fetchone()
            return str(row[0]) if row and rules.key_matches(row[1], secret) else None

        return self._keys.get(rules.digest(secret), read)

    def keys_used(self, used: Mapping[str, float]) -> None:
        if not used:
            return
        with self.db.connection() as conn, conn.cursor() as cursor:
            cursor.executemany(
                "UPDATE mlapi_keys SET last_used = greatest(last_used, %s) WHERE id = %s",
                [(at, key_id) for key_id, at in used.items()],
            )


class PgSecret:
    def __init__(self, db: Database) -> None:
        self.db = db

    def get(self) -> bytes:
        with self.db.connection() as conn:
            conn.execute(
                "INSERT INTO mlapi_secret VALUES (1, %s) ON CONFLICT DO NOTHING",
                (secrets.token_hex(32),),
            )
            row = conn.execute("SELECT secret FROM mlapi_secret").fetchone()
        assert row is not None
        return str(row[0]).encode()


class PgLoginAttempts:
    """Failed logins as rows; per key, an advisory lock makes check-and-count atomic across
    replicas, so a burst of guesses spread over them is refused like a sequence."""

    def __init__(self, db: Database, limit: int = 5, window: float = 300.0) -> None:
        self.db, self.limit, self.window = db, limit, window

    def attempt(self, user: str, address: str) -> int:
        now = time.time()
        pair, addr = login_keys(user, address)
        with self.db.connection() as conn, conn.transaction():
            for key in (pair, addr):  # always in this order: no two attempts deadlock
                conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))
            conn.execute(
                "DELETE FROM mlapi_login_failures WHERE key IN (%s, %s) AND at <= %s",
                (pair, addr, now - self.window),
            )
            waits = []
            for key, limit in ((pair, self.limit), (addr, self.limit * 4)):
                row = conn.execute(
                    "SELECT count(*), min(at) FROM mlapi_login_failures WHERE key = %s", (key,)
                ).fetchone()
                if row and row[0] >= limit:
                    waits.append(int(row[1] + self.window - now) + 1)
            if waits:
                return max(waits)
            conn.execute(
                "INSERT INTO mlapi_login_failures VALUES (%s, %s), (%s, %s)",
                (pair, now, addr, now),
            )
            if secrets.randbelow(100) == 0:  # now and then, everyone's old failures
                sql = "DELETE FROM mlapi_login_failures WHERE at <= %s"
                conn.execute(sql, (now - self.window,))
            return 0

    def succeeded(self, user: str, address: str) -> None:
        pair, addr = login_keys(user, address)
        with self.db.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM mlapi_login_failures WHERE key = %s", (pair,))
            conn.execute(
                "DELETE FROM mlapi_login_failures WHERE ctid = (SELECT ctid FROM "
                "mlapi_login_failures WHERE key = %s ORDER BY at DESC LIMIT 1)",
                (addr,),
            )


class PgSessions:
    def __init__(
        self,
        db: Database,
        lifetime: float = SESSION_LIFETIME,
        max_per_user: int = StoreSettings.max_sessions_per_user,
    ) -> None:
        self.db, self.lifetime, self.max_per_user = db, lifetime, max_per_user

    def open(self, user: str, stamp: str) -> tuple[str, str]:
        secret, csrf = new_session()
        now = time.time()
        with self.db.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM mlapi_console_sessions WHERE expires < %s", (now,))
            # The user's row, locked: one sign-in of this user at a time adds and trims.
            sql = "SELECT 1 FROM mlapi_users WHERE name = %s FOR NO KEY UPDATE"
            if conn.execute(sql, (user,)).fetchone() is None:
                raise UserError(f"no user named {user!r}")
            conn.execute(
                "INSERT INTO mlapi_console_sessions VALUES (%s, %s, %s, %s, %s)",
                (rules.digest(secret), user, csrf, stamp, now + self.lifetime),
            )
            # Beyond the cap, the user's oldest sessions end.
            conn.execute(
                "DELETE FROM mlapi_console_sessions WHERE digest IN (SELECT digest FROM "
                "mlapi_console_sessions WHERE username = %s "
                "ORDER BY expires DESC, digest OFFSET %s)",
                (user, self.max_per_user),
            )
        return secret, csrf

    def find(self, secret: str) -> ConsoleSession | None:
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT username, csrf, stamp, expires FROM mlapi_console_sessions "
                "WHERE digest = %s AND expires > %s",
                (rules.digest(secret), time.time()),
            ).fetchone()
        return ConsoleSession(*row) if row else None

    def close(self, secret: str) -> None:
        with self.db.connection() as conn:
            sql = "DELETE FROM mlapi_console_sessions WHERE digest = %s"
            conn.execute(sql, (rules.digest(secret),))


class PgPlates:
    """Known plates as rows. Matching reads them at most once a KEY_FRESH second (every
    replica names a plate added anywhere within a second; this one at once), and goes on
    with what it read for TRUST_OFFLINE seconds while the database does not answer."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._index = Remembered()

    def add(self, name: str, plate: str = "", pattern: str = "") -> KnownPlate:
        wanted = rules.known_plate(name, plate, pattern)
        with self.db.connection() as conn, conn.transaction():
            row = conn.execute(
                "INSERT INTO mlapi_plates VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING "
                "RETURNING name, plate, pattern, created",
                (wanted.name, wanted.plate, wanted.pattern, time.time()),
            ).fetchone()
            if row is None:  # there already, or the plate is another name's
                row = conn.execute(
                    "SELECT name, plate, pattern, created FROM mlapi_plates "
                    "WHERE (name, plate, pattern) = (%s, %s, %s) OR (plate <> '' AND plate = %s)",
                    (wanted.name, wanted.plate, wanted.pattern, wanted.plate),
                ).fetchone()
        self._index.forget()
        if row is None:  # removed meanwhile: as if added and removed at once
            return KnownPlate(wanted.name, wanted.plate, wanted.pattern, time.time())
        had = KnownPlate(*row)
        if had.name != wanted.name:
            raise PlateTaken(f"plate {had.plate} is already known as {had.name!r}")
        return had

    def remove(self, name: str) -> int:
        with self.db.connection() as conn:
            rows = conn.execute("DELETE FROM mlapi_plates WHERE name = %s RETURNING 1", (name,))
            removed = len(rows.fetchall())
        self._index.forget()
        if not removed:
            raise UnknownPlate(f"no known plate named {name!r}")
        return removed

    def known(self) -> list[KnownPlate]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT name, plate, pattern, created FROM mlapi_plates ORDER BY name, created"
            ).fetchall()
        return [KnownPlate(*row) for row in rows]

    def match(self, plate: str) -> KnownPlate | None:
        def read() -> PlateIndex:
            return PlateIndex(sorted(self.known(), key=lambda k: k.created))

        return self._index.get("plates", read).match(plate)
