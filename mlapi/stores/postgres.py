"""The stores in PostgreSQL (`--database postgresql://…`): what replicas share.

A small connection pool (`Database`) serves the server's threads (every call here is
blocking and the server makes it off the event loop) and the CLI alike. Every call ends
within the database timeout (`--db-timeout`, plus GRACE): the server cancels a statement
or a lock wait past it, and a watchdog shuts down the socket of a connection still lent
out at its deadline (a stopped or unreachable server answers nothing at all); after such a
stall, calls fail at once until a probe gets an answer again. Each store keeps what it
must answer per request in memory, checked against the database: an API key or a password
stamp is re-read after KEY_FRESH seconds, so a revoked key or a new password is refused
by every replica within a second; the gallery re-reads its samples when a version counter
that every change bumps has moved. When the database does not answer, a key or stamp read
within TRUST_OFFLINE seconds is still trusted (detection goes on for clients just seen);
everything else is StoreUnavailable, a 503 with Retry-After.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import secrets
import select
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psycopg
from psycopg import pq

from mlapi import text
from mlapi.config import StoreSettings
from mlapi.errors import (
    GalleryError,
    MlapiError,
    PlateTaken,
    StoreUnavailable,
    UnknownPerson,
    UnknownPlate,
    UserError,
)
from mlapi.stores import ApiKey, ConsoleSession, KnownPlate, Match, Sample, rules, too_many_keys
from mlapi.stores.console_sessions import SESSION_LIFETIME, new_session
from mlapi.stores.files import FileSnapshot
from mlapi.stores.logins import keys as login_keys
from mlapi.stores.matching import Index, PlateIndex

KEY_FRESH = 1.0  # seconds a checked key or stamp is used without asking the database again
TRUST_OFFLINE = 60.0  # seconds it is still trusted while the database does not answer
# The client gives up this long after the server's own statement and lock timeouts, so a
# lock wait ends on the server (the connection stays usable) and only a silent server
# has its connection cut.
GRACE = 0.25
LONG = 300.0  # seconds for a schema upgrade or `db copy`, which may run long by nature
MAX_IDLE = 600.0  # seconds an unused connection is kept
UNAVAILABLE = "the database does not answer; retry shortly"
MIGRATION_LOCK = 0x6D6C6170  # "mlap": one replica at a time upgrades the schema
T = TypeVar("T")
log = logging.getLogger("mlapi.stores")

# Each entry moves the schema one version up; never edit one that has shipped.
MIGRATIONS = (
    """
    CREATE TABLE mlapi_users (
        name text PRIMARY KEY, hash text NOT NULL, created double precision NOT NULL);
    CREATE TABLE mlapi_keys (
        id text PRIMARY KEY, name text NOT NULL,
        username text NOT NULL REFERENCES mlapi_users (name) ON DELETE CASCADE,
        sha256 text NOT NULL, created double precision NOT NULL);
    CREATE TABLE mlapi_secret (id integer PRIMARY KEY CHECK (id = 1), secret text NOT NULL);
    CREATE TABLE mlapi_login_failures (key text NOT NULL, at double precision NOT NULL);
    CREATE INDEX mlapi_login_failures_key ON mlapi_login_failures (key, at);
    CREATE TABLE mlapi_samples (
        id text PRIMARY KEY, name text NOT NULL, model text NOT NULL,
        created double precision NOT NULL, source text NOT NULL DEFAULT '',
        embedding real[] NOT NULL);
    CREATE TABLE mlapi_gallery_version (
        id integer PRIMARY KEY CHECK (id = 1), version bigint NOT NULL);
    INSERT INTO mlapi_gallery_version VALUES (1, 0);
    """,
    """
    CREATE TABLE mlapi_people (name text PRIMARY KEY);
    """,
    """
    ALTER TABLE mlapi_keys ADD COLUMN last_used double precision;
    CREATE TABLE mlapi_thumbnails (
        id text PRIMARY KEY REFERENCES mlapi_samples (id) ON DELETE CASCADE,
        jpeg bytea NOT NULL);
    CREATE TABLE mlapi_console_sessions (
        digest text PRIMARY KEY,
        username text NOT NULL REFERENCES mlapi_users (name) ON DELETE CASCADE,
        csrf text NOT NULL, stamp text NOT NULL, expires double precision NOT NULL);
    """,
    """
    CREATE TABLE mlapi_plates (
        name text NOT NULL, plate text NOT NULL DEFAULT '', pattern text NOT NULL DEFAULT '',
        created double precision NOT NULL,
        PRIMARY KEY (name, plate, pattern),
        CHECK ((plate = '') <> (pattern = '')));
    CREATE UNIQUE INDEX mlapi_plates_plate ON mlapi_plates (plate) WHERE plate <> '';
    """,
)


def is_database_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def shown_url(url: str) -> str:
    """The URL without its password, for logs and messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "postgresql://…"
    host, port, name = info.get("host", ""), info.get("port", ""), info.get("dbname", "")
    return f"postgresql://{info.get('user', '')}@{host}{':' if port else ''}{port}/{name}"


class Stalled(StoreUnavailable):
    """The database did not answer by the deadline (stopped, unreachable, overloaded), as
    opposed to refusing at once: calls fail fast until a probe gets an answer."""


class Watchdog:
    """One thread for every pool in the process. At its deadline, a lent connection that is
    waiting on the server (a statement in flight) has its socket shut down, so the call
    blocked on it fails at once (psycopg raises OperationalError) where no server-side
    timeout can help: a stopped server, a lost network. One whose caller is busy with rows
    it already has is given another timeout's worth."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: dict[int, tuple[float, float, psycopg.Connection[Any]]] = {}
        self._cut: set[int] = set()
        self._tokens = itertools.count()
        self._wake_at = math.inf
        self._thread: threading.Thread | None = None

    def watch(self, conn: psycopg.Connection[Any], deadline: float, again: float) -> int:
        """Cut `conn` if it waits on the server at `deadline` (else look `again` s later)."""
        with self._cond:
            token = next(self._tokens)
            self._due[token] = (deadline, again, conn)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mlapi-db-watchdog")
                self._thread.daemon = True
                self._thread.start()
            if deadline < self._wake_at:  # usually not: deadlines come in order
                self._cond.notify()
        return token

    def release(self, token: int) -> bool:
        """Stop watching; True if the connection was cut meanwhile."""
        with self._cond:
            self._due.pop(token, None)
            if token in self._cut:
                self._cut.discard(token)
                return True
            return False

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                for token, (deadline, again, conn) in list(self._due.items()):
                    if deadline > now:
                        continue
                    try:
                        waiting = conn.info.transaction_status == pq.TransactionStatus.ACTIVE
                    except Exception:  # never let this thread die: cut when unsure
                        waiting = True
                    if waiting:
                        del self._due[token]
                        self._cut.add(token)
                        shut_down(conn)
                    else:
                        self._due[token] = (now + again, again, conn)
                self._wake_at = min((d for d, _, _ in self._due.values()), default=math.inf)
                wait = self._wake_at - time.monotonic()
                self._cond.wait(None if wait == math.inf else max(wait, 0.0))


WATCHDOG = Watchdog()


def shut_down(conn: psycopg.Connection[Any]) -> None:
    """End the connection's socket under the thread using it (not closed: that thread's
    libpq still owns the descriptor)."""
    with (
        contextlib.suppress(OSError, psycopg.Error),
        socket.socket(fileno=os.dup(conn.fileno())) as sock,
    ):
        sock.shutdown(socket.SHUT_RDWR)


def quiet(conn: psycopg.Connection[Any]) -> bool:
    """An idle connection fit to lend: open, outside a transaction, and nothing to read (a
    server that restarted or ended it has sent its goodbye or closed the socket). A
    zero-wait poll: no round trip."""
    if conn.closed or conn.info.transaction_status != pq.TransactionStatus.IDLE:
        return False
    try:
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        return not poller.poll(0)
    except (OSError, psycopg.Error):
        return False


class Dialing:
    """A connection being made in a helper thread."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.conn: psycopg.Connection[Any] | None = None
        self.error: Exception | None = None
        self.abandoned = False  # its caller's deadline passed first


class Database:
    """A small pool of connections, lent one call at a time; any failure to reach the
    database is StoreUnavailable, and comes within `timeout` seconds (plus GRACE), waiting
    for a connection and connecting included.

    Not psycopg_pool: its connections are made by background workers that back off
    exponentially after failures (sign-ins failed for minutes after a restart), and it
    checks a connection with a round trip or not at all. Here a connection is made on
    demand by the call that needs it, the most recently used idle one is lent first, and
    one that the server has closed (a restart) is noticed with a zero-wait poll and
    replaced before anyone sees an error."""

    def __init__(
        self, url: str, max_size: int = 8, timeout: float = StoreSettings.db_timeout
    ) -> None:
        if not is_database_url(url):
            raise MlapiError("--database takes a postgresql:// URL")
        self.url, self.max_size, self.timeout = url, max_size, timeout
        self._lock = threading.Condition()
        self._idle: list[tuple[psycopg.Connection[Any], float]] = []  # (conn, since), LIFO
        self._count = 0  # connections idle, lent or being made
        self._closed = False
        self.stalled = False  # a call timed out: fail fast until the probe gets an answer

    def connection(
        self, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        """A connection for one call (a statement, several, or a transaction), within the
        database timeout, or within `timeout` seconds for the rare long call (a schema
        upgrade, `db copy`)."""
        if self.stalled and timeout is None:
            raise Stalled(UNAVAILABLE)  # at once: the database is known not to answer
        return self._lend(timeout)

    @contextlib.contextmanager
    def _lend(self, timeout: float | None) -> Iterator[psycopg.Connection[Any]]:
        budget = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + budget + GRACE
        try:
            conn = self._checkout(deadline)
        except Stalled:
            self._trip()
            raise
        token = WATCHDOG.watch(conn, deadline, budget + GRACE)
        cut = False
        try:
            if timeout is not None:
                _limit(conn, budget)
            yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            cut = WATCHDOG.release(token)  # a statement or lock timeout leaves it usable
            if cut:
                self._trip()
                raise Stalled(UNAVAILABLE) from exc
            raise StoreUnavailable(UNAVAILABLE) from exc
        finally:
            cut = WATCHDOG.release(token) or cut
            self._checkin(conn, reuse=not cut and timeout is None)

    def _checkout(self, deadline: float) -> psycopg.Connection[Any]:
        gone: list[psycopg.Connection[Any]] = []
        try:
            with self._lock:
                while True:
                    if self._closed:
                        raise StoreUnavailable("the database connections are closed")
                    while self._idle:
                        conn, _ = self._idle.pop()
                        if quiet(conn):
                            return conn
                        gone.append(conn)  # a restart ended it: replaced, unseen
                        self._count -= 1
                    if self._count < self.max_size:
                        self._count += 1
                        break
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise StoreUnavailable(UNAVAILABLE)  # every connection is busy
                    self._lock.wait(left)
        finally:
            if gone:
                with self._lock:
                    self._lock.notify_all()  # slots freed: waiters may connect
            for conn in gone:
                conn.close()
        try:
            return self._dial(deadline, adopt=True)
        except Stalled:
            raise  # the slot is freed when the late connection arrives or fails
        except BaseException:
            self._free_slot()
            raise

    def _checkin(self, conn: psycopg.Connection[Any], reuse: bool) -> None:
        reuse = reuse and quiet(conn)
        old: list[psycopg.Connection[Any]] = []
        with self._lock:
            now = time.monotonic()
            if reuse and not self._closed:
                self._idle.append((conn, now))
                while now - self._idle[0][1] > MAX_IDLE:
                    old.append(self._idle.pop(0)[0])
                    self._count -= 1
            else:
                old.append(conn)
                self._count -= 1
            if len(old) > 1:
                self._lock.notify_all()
            else:
                self._lock.notify()
        for each in old:
            each.close()

    def _free_slot(self) -> None:
        with self._lock:
            self._count -= 1
            self._lock.notify()

    def _dial(self, deadline: float, adopt: bool) -> psycopg.Connection[Any]:
        """A new connection by the deadline, else Stalled. It is made in a helper thread:
        libpq counts its connect_timeout in whole seconds, two at least. One that arrives
        late joins the idle ones when `adopt` (its slot is counted), else is closed."""
        dialing = Dialing()
        helper = threading.Thread(target=self._connect, args=(dialing, adopt), daemon=True)
        helper.name = "mlapi-db-connect"
        helper.start()
        now = time.monotonic()
        dialing.done.wait(max(0.0, min(deadline, now + self.timeout + GRACE) - now))
        with self._lock:
            if not dialing.done.is_set():
                dialing.abandoned = True
                raise Stalled(UNAVAILABLE)
        if dialing.error is not None:
            raise StoreUnavailable(UNAVAILABLE) from dialing.error
        assert dialing.conn is not None
        return dialing.conn

    def _connect(self, dialing: Dialing, adopt: bool) -> None:
        conn: psycopg.Connection[Any] | None = None
        error: Exception | None = None
        try:
            conn = psycopg.connect(
                self.url,
                autocommit=True,
                connect_timeout=max(2, math.ceil(self.timeout + GRACE)),
            )
            wait = self.timeout + GRACE
            token = WATCHDOG.watch(conn, time.monotonic() + wait, wait)
            try:
                _limit(conn, self.timeout)
            finally:
                WATCHDOG.release(token)
        except Exception as exc:  # handed to the caller, which raises it
            error = exc
            if conn is not None:
                conn.close()
                conn = None
        with self._lock:
            dialing.conn, dialing.error = conn, error
            dialing.done.set()
            if not dialing.abandoned:
                return
            if adopt:
                if conn is not None and not self._closed:
                    self._idle.append((conn, time.monotonic()))
                    conn = None
                else:
                    self._count -= 1
                self._lock.notify()
        if conn is not None:
            conn.close()

    def _trip(self) -> None:
        with self._lock:
            if self.stalled or self._closed:
                return
            self.stalled = True
        log.warning(
            "the database did not answer within %g s; calls fail at once until it does",
            self.timeout,
        )
        probe = threading.Thread(target=self._probe, name="mlapi-db-probe", daemon=True)
        probe.start()

    def _probe(self) -> None:
        """While stalled: a new connection and `SELECT 1`, each within the timeout, again
        and again until the database answers (or refuses at once: a stopped server, which
        callers then find out for themselves just as fast)."""
        while not self._closed:
            deadline = time.monotonic() + self.timeout + GRACE
            try:
                conn = self._dial(deadline, adopt=False)
            except Stalled:
                continue
            except StoreUnavailable:
                break
            token = WATCHDOG.watch(conn, deadline, self.timeout + GRACE)
            with contextlib.suppress(psycopg.Error):
                conn.execute("SELECT 1")
            cut = WATCHDOG.release(token)
            conn.close()
            if not cut:
                break
        with self._lock:
            self.stalled = False
        if not self._closed:
            log.warning("the database answers again")

    def upgrade(self) -> tuple[int, int]:
        """Bring the schema up to date; (version before, version after). Safe when several
        replicas start at once: one upgrades, the others wait and find it done."""
        with self.connection(LONG) as conn, conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS mlapi_schema (version integer NOT NULL)")
            row = conn.execute("SELECT version FROM mlapi_schema").fetchone()
            if row is None:
                conn.execute("INSERT INTO mlapi_schema VALUES (0)")
            before = row[0] if row else 0
            if before > len(MIGRATIONS):
                raise MlapiError(
                    f"the database's schema is version {before}; this mlapi knows up to "
                    f"{len(MIGRATIONS)}: upgrade mlapi"
                )
            for sql in MIGRATIONS[before:]:
                conn.execute(sql.encode())
            conn.execute("UPDATE mlapi_schema SET version = %s", (len(MIGRATIONS),))
            return before, len(MIGRATIONS)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._lock.notify_all()
        for conn, _ in idle:
            conn.close()


def _limit(conn: psycopg.Connection[Any], seconds: float) -> None:
    """The server's own statement and lock timeouts for this connection (0: none)."""
    ms = str(max(int(seconds * 1000), 1))
    conn.execute(
        "SELECT set_config('statement_timeout', %s, false), set_config('lock_timeout', %s, false)",
        (ms, ms),
    )


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


class PgGallery:
    """Samples as rows; matching against an in-memory copy of every embedding, re-read when
    the version counter moved. Big reads are converted a chunk of rows at a time, and the
    embeddings arrive as binary float4 arrays parsed by numpy, so a server's event loop
    (which needs the GIL too) goes on answering while 30,000 samples are read."""

    CHUNK = 1000  # rows converted per call: a few milliseconds holding the GIL
    FLOAT4 = 700  # the element type's oid in a real[]'s binary form

    def __init__(self, db: Database) -> None:
        self.db = db
        self._version: int | None = None
        self._indexes: dict[str, Index] = {}
        self._lock = threading.Lock()
        # Every sample, for listings (ten at once must not each make 30,000 objects).
        self._listed: tuple[int, list[Sample]] | None = None
        self._listing = threading.Lock()

    def add(
        self,
        name: str,
        embedding: np.ndarray,
        model: str,
        source: str = "",
        thumbnail: bytes | None = None,
    ) -> str:
        name = rules.person_name(name)
        sample_id = secrets.token_hex(6)
        with self.db.connection() as conn, conn.transaction():
            conn.execute(
                "INSERT INTO mlapi_samples VALUES (%s, %s, %s, %s, %s, %s)",
                (sample_id, name, model, time.time(), source, rules.stored_embedding(embedding)),
            )
            if thumbnail:
                conn.execute("INSERT INTO mlapi_thumbnails VALUES (%s, %s)", (sample_id, thumbnail))
            conn.execute("UPDATE mlapi_gallery_version SET version = version + 1")
        return sample_id  # answered only once committed: no acknowledged sample is lost

    def remove(self, name: str, sample_id: str | None = None) -> int:
        with self.db.connection() as conn, conn.transaction():
            if sample_id:
                sql = "DELETE FROM mlapi_samples WHERE name = %s AND id = %s RETURNING 1"
                removed = len(conn.execute(sql, (name, sample_id)).fetchall())
            else:
                sql = "DELETE FROM mlapi_samples WHERE name = %s RETURNING 1"
                removed = len(conn.execute(sql, (name,)).fetchall())
            if not sample_id:
                sql = "DELETE FROM mlapi_people WHERE name = %s RETURNING 1"
                empty = conn.execute(sql, (name,)).fetchone() is not None
            else:
                empty = False
            if removed:
                conn.execute("UPDATE mlapi_gallery_version SET version = version + 1")
        if not removed and not empty:
            what = f"sample {sample_id} of {name!r}" if sample_id else f"person {name!r}"
            raise UnknownPerson(f"no {what} in the gallery")
        return removed

    def samples(self) -> list[Sample]:
        """Re-read only when the version counter moved (every change moves it)."""
        with self.db.connection() as conn:
            version = self._version_now(conn)
            with self._listing:
                if self._listed is None or self._listed[0] != version:
                    self._listed = version, self._read_samples(conn)
                return list(self._listed[1])

    def _read_samples(self, conn: psycopg.Connection[Any]) -> list[Sample]:
        found: list[Sample] = []
        with conn.cursor() as cursor:
            cursor.execute(
                "SELECT id, name, model, created, source FROM mlapi_samples ORDER BY created"
            )
            while rows := cursor.fetchmany(self.CHUNK):
                found += (Sample(*row) for row in rows)
        return found

    @staticmethod
    def _version_now(conn: psycopg.Connection[Any]) -> int:
        """The gallery's version counter: read before the rows, so what is kept under it is
        never older than it says."""
        row = conn.execute("SELECT version FROM mlapi_gallery_version").fetchone()
        return int(row[0]) if row else 0

    def names(self) -> list[str]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT name FROM mlapi_samples UNION SELECT name FROM mlapi_people ORDER BY name"
            )
            return [text.shown(r[0]) for r in rows]

    def create(self, name: str) -> bool:
        name = rules.person_name(name)
        with self.db.connection() as conn, conn.transaction():
            known = conn.execute(
                "SELECT 1 FROM mlapi_samples WHERE name = %s LIMIT 1", (name,)
            ).fetchone()
            added = conn.execute(
                "INSERT INTO mlapi_people VALUES (%s) ON CONFLICT DO NOTHING RETURNING 1", (name,)
            ).fetchone()
        return known is None and added is not None

    def rename(self, old: str, new: str) -> int:
        new = rules.person_name(new)
        with self.db.connection() as conn, conn.transaction():
            moved = conn.execute(
                "UPDATE mlapi_samples SET name = %s WHERE name = %s", (new, old)
            ).rowcount
            was = conn.execute("DELETE FROM mlapi_people WHERE name = %s RETURNING 1", (old,))
            if not moved and was.fetchone() is None:
                raise UnknownPerson(f"no person {old!r} in the gallery")
            conn.execute("INSERT INTO mlapi_people VALUES (%s) ON CONFLICT DO NOTHING", (new,))
            conn.execute("UPDATE mlapi_gallery_version SET version = version + 1")
        return max(moved, 0)

    def sample(self, sample_id: str) -> tuple[Sample, list[float]] | None:
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT id, name, model, created, source, embedding FROM mlapi_samples "
                "WHERE id = %s",
                (sample_id,),
            ).fetchone()
        return (Sample(*row[:5]), list(row[5])) if row else None

    def remove_sample(self, sample_id: str) -> Sample:
        with self.db.connection() as conn, conn.transaction():
            row = conn.execute(
                "DELETE FROM mlapi_samples WHERE id = %s "
                "RETURNING id, name, model, created, source",
                (sample_id,),
            ).fetchone()
            if row is None:
                raise UnknownPerson(f"no sample {sample_id!r} in the gallery")
            conn.execute("UPDATE mlapi_gallery_version SET version = version + 1")
        return Sample(*row)

    def clear(self) -> int:
        with self.db.connection() as conn, conn.transaction():
            count = conn.execute(
                "SELECT count(*) FROM (SELECT name FROM mlapi_samples UNION "
                "SELECT name FROM mlapi_people) AS everyone"
            ).fetchone()
            conn.execute("DELETE FROM mlapi_samples")
            conn.execute("DELETE FROM mlapi_people")
            conn.execute("UPDATE mlapi_gallery_version SET version = version + 1")
        return int(count[0]) if count else 0

    def thumbnail(self, sample_id: str) -> bytes | None:
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT jpeg FROM mlapi_thumbnails WHERE id = %s", (sample_id,)
            ).fetchone()
        return bytes(row[0]) if row else None

    def _index(self, model: str) -> Index:
        """The model's samples, re-read when another replica (or the CLI) changed them."""
        with self.db.connection() as conn:
            version = self._version_now(conn)
            with self._lock:
                if version != self._version:
                    self._indexes = self._read_indexes(conn)
                    self._version = version
                if model not in self._indexes:
                    self._indexes[model] = Index([], np.zeros((0, 0), np.float32))
                return self._indexes[model]

    def _read_indexes(self, conn: psycopg.Connection[Any]) -> dict[str, Index]:
        """Every model's samples. Not `embedding` itself: psycopg would make 30,000 lists
        of floats in one call that holds the GIL for a second (the loop starves)."""
        names: dict[str, list[str]] = {}
        vectors: dict[str, list[np.ndarray]] = {}
        with conn.cursor(binary=True) as cursor:
            cursor.execute(
                "SELECT model, name, array_send(embedding) FROM mlapi_samples ORDER BY created, id"
            )
            while rows := cursor.fetchmany(self.CHUNK):
                chunk: dict[str, tuple[list[str], list[bytes]]] = {}
                for model, name, blob in rows:
                    who, blobs = chunk.setdefault(model, ([], []))
                    who.append(name)
                    blobs.append(blob)
                for model, (who, blobs) in chunk.items():
                    names.setdefault(model, []).extend(who)
                    vectors.setdefault(model, []).append(self._floats(model, blobs))
        if any(len({v.shape[1] for v in vectors[m]}) > 1 for m in names):
            raise GalleryError("the gallery's samples of one model differ in length")
        return {m: Index(names[m], np.concatenate(vectors[m])) for m in names}

    @classmethod
    def _floats(cls, model: str, blobs: list[bytes]) -> np.ndarray:
        """float4 arrays in PostgreSQL's binary form (array_send), one row each: a header
        (dimensions, null flag, element type, length, lower bound), then each element's
        byte count (4) and big-endian value."""
        words = np.frombuffer(b"".join(blobs), ">i4") if len(set(map(len, blobs))) == 1 else None
        if words is not None:
            words = words.reshape(len(blobs), -1)
            size = (words.shape[1] - 5) // 2
            header = np.array([1, 0, cls.FLOAT4, size])
            whole = size > 0 and words.shape[1] == 5 + 2 * size
            if whole and (words[:, :4] == header).all() and (words[:, 5::2] == 4).all():
                return words[:, 6::2].view(">f4").astype(np.float32)
        raise GalleryError(f"the gallery's {model} samples are not embeddings of one length")

    def ranking(self, embedding: np.ndarray, model: str) -> list[Match]:
        return self._index(model).ranking(embedding)

    def match(self, embedding: np.ndarray, model: str) -> Match | None:
        return self._index(model).match(embedding)


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


def copy_files(folder: Path, db: Database) -> dict[str, tuple[int, int]]:
    """Copy the TinyDB files in `folder` (users, API keys, the signing secret, the gallery,
    the known plates) into the database: {what: (copied, already there)}. Rows keep their
    ids and hashes, so keys, tokens and samples go on working, and a second run copies
    nothing again."""
    users = FileSnapshot(folder / "users.json").read()[0]
    gallery = FileSnapshot(folder / "gallery.json").read()[0]
    plates = FileSnapshot(folder / "plates.json").read()[0]
    secret_file = folder / "jwt.secret"
    counts: dict[str, tuple[int, int]] = {}

    def insert(
        conn: psycopg.Connection[Any], what: str, sql: str, rows: list[tuple[Any, ...]]
    ) -> int:
        with conn.cursor() as cursor:  # one pipelined round of inserts, not one trip each
            cursor.executemany(sql, rows)
            copied = max(cursor.rowcount, 0) if rows else 0
        counts[what] = (copied, len(rows) - copied)
        return copied

    with db.connection(LONG) as conn, conn.transaction():
        insert(
            conn,
            "users",
            "INSERT INTO mlapi_users VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
            [(u["name"], u["hash"], u["created"]) for u in users.get("users", {}).values()],
        )
        insert(
            conn,
            "API keys",
            "INSERT INTO mlapi_keys VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [
                (k["id"], k["name"], k["user"], k["sha256"], k["created"], k.get("last_used"))
                for k in users.get("keys", {}).values()
            ],
        )
        secrets_ = [(secret_file.read_text().strip(),)] if secret_file.exists() else []
        insert(
            conn,
            "signing secret",
            "INSERT INTO mlapi_secret VALUES (1, %s) ON CONFLICT DO NOTHING",
            secrets_,
        )
        samples = [
            (r["id"], text.shown(r["name"]), r["model"], r["created"], r.get("source", ""),
             r["embedding"])
            for r in gallery.get("samples", {}).values()
        ]  # fmt: skip
        if insert(
            conn,
            "face samples",
            "INSERT INTO mlapi_samples VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
            samples,
        ):
            conn.execute("UPDATE mlapi_gallery_version SET version = version + 1")
        faces = folder / "faces"
        insert(
            conn,
            "face thumbnails",
            "INSERT INTO mlapi_thumbnails SELECT %s, %s WHERE EXISTS "
            "(SELECT 1 FROM mlapi_samples WHERE id = %s) ON CONFLICT DO NOTHING",
            [
                (r["id"], jpeg.read_bytes(), r["id"])
                for r in gallery.get("samples", {}).values()
                if (jpeg := faces / f"{r['id']}.jpg").is_file()
            ],
        )
        insert(
            conn,
            "known plates",
            "INSERT INTO mlapi_plates VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            [
                (r["name"], r.get("plate", ""), r.get("pattern", ""), r["created"])
                for r in plates.get("plates", {}).values()
            ],
        )
    return counts
