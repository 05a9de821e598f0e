"""The PostgreSQL connection the stores share (`--database postgresql://…`): a small pool
whose every call ends within the database timeout (`--db-timeout`, plus GRACE), the schema
and its migrations.

The server cancels a statement or a lock wait past the timeout, and a watchdog shuts down
the socket of a connection still lent out at its deadline (a stopped or unreachable server
answers nothing at all); after such a stall, calls fail at once until a probe gets an
answer again. Connections are made on demand in the caller's deadline, the most recent
idle one lent first, and one the server closed is never lent.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, TypeVar

import psycopg
from psycopg import pq

from mlapi.config import StoreSettings
from mlapi.errors import (
    MlapiError,
    Stalled,
    StoreUnavailable,
)

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
    """
    CREATE TABLE mlapi_sightings (
        id text PRIMARY KEY, n bigint GENERATED ALWAYS AS IDENTITY,
        seen double precision NOT NULL, model text NOT NULL, embedding bytea NOT NULL,
        box integer[] NOT NULL, quality double precision NOT NULL, person text,
        similarity double precision NOT NULL DEFAULT 0, source text NOT NULL DEFAULT '',
        route text NOT NULL DEFAULT '', client text NOT NULL DEFAULT '', cluster text,
        picture bytea);
    CREATE INDEX mlapi_sightings_person ON mlapi_sightings (person, seen)
        WHERE person IS NOT NULL;
    CREATE INDEX mlapi_sightings_cluster ON mlapi_sightings (cluster) WHERE person IS NULL;
    CREATE INDEX mlapi_sightings_seen ON mlapi_sightings (seen, n);
    CREATE TABLE mlapi_clusters (
        id text PRIMARY KEY, model text NOT NULL, total bytea NOT NULL,
        count integer NOT NULL);
    CREATE TABLE mlapi_sightings_version (
        id integer PRIMARY KEY CHECK (id = 1), version bigint NOT NULL);
    INSERT INTO mlapi_sightings_version VALUES (1, 0);
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
