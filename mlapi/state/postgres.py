"""The stores in PostgreSQL (`--database postgresql://…`): what replicas share.

psycopg 3's connection pool serves the server's threads (every call here is blocking and
the server makes it off the event loop) and the CLI alike. Each store keeps what it must
answer per request in memory, checked against the database: an API key or a password
stamp is re-read after KEY_FRESH seconds, so a revoked key or a new password is refused
by every replica within a second; the gallery re-reads its samples when a version counter
that every change bumps has moved. When the database does not answer, a key or stamp read
within TRUST_OFFLINE seconds is still trusted (detection goes on for clients just seen);
everything else is StoreUnavailable, a 503 with Retry-After.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from mlapi import text
from mlapi.errors import GalleryError, MlapiError, StoreUnavailable, UserError
from mlapi.state import ApiKey, ConsoleSession, Match, Sample, rules
from mlapi.state.files import FileSnapshot
from mlapi.state.logins import keys as login_keys
from mlapi.state.matching import Index
from mlapi.state.sessions import SESSION_LIFETIME, new_session

KEY_FRESH = 1.0  # seconds a checked key or stamp is used without asking the database again
TRUST_OFFLINE = 60.0  # seconds it is still trusted while the database does not answer
POOL_TIMEOUT = 3.0  # seconds to wait for a connection before answering 503
MIGRATION_LOCK = 0x6D6C6170  # "mlap": one replica at a time upgrades the schema
T = TypeVar("T")

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


class Database:
    """A connection pool; any failure to reach the database is StoreUnavailable."""

    def __init__(self, url: str, max_size: int = 8) -> None:
        if not is_database_url(url):
            raise MlapiError("--database takes a postgresql:// URL")
        self.pool = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            timeout=POOL_TIMEOUT,
            kwargs={"autocommit": True, "connect_timeout": 3},
            open=False,
            name="mlapi",
        )
        self.pool.open(wait=False)  # it connects, and reconnects, by itself

    @contextlib.contextmanager
    def connection(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self.pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, psycopg.InterfaceError, PoolTimeout) as exc:
            raise StoreUnavailable("the database does not answer; retry shortly") from exc

    def upgrade(self) -> tuple[int, int]:
        """Bring the schema up to date; (version before, version after). Safe when several
        replicas start at once: one upgrades, the others wait and find it done."""
        with self.connection() as conn, conn.transaction():
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
        self.pool.close()


class Remembered:
    """Answers read from the database, with the time they were read."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str, read: Callable[[], T]) -> T:
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
        if seen and now - seen[1] < KEY_FRESH:
            return seen[0]  # type: ignore[no-any-return]
        try:
            value = read()
        except StoreUnavailable:
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
    def __init__(self, db: Database, passwords: rules.Passwords | None = None) -> None:
        self.db = db
        self.passwords = passwords or rules.Passwords()
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

    def session(self, name: str) -> str | None:
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
        with self.db.connection() as conn:
            added = conn.execute(
                "INSERT INTO mlapi_keys SELECT %s, %s, name, %s, %s FROM mlapi_users "
                "WHERE name = %s RETURNING 1",
                (key_id, name, rules.digest(secret), time.time(), user),
            ).fetchone()
        if added is None:
            raise UserError(f"no user named {user!r}")
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
            raise GalleryError(f"no {what} in the gallery")
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
                raise GalleryError(f"no person {old!r} in the gallery")
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
                raise GalleryError(f"no sample {sample_id!r} in the gallery")
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
    def __init__(self, db: Database, lifetime: float = SESSION_LIFETIME) -> None:
        self.db, self.lifetime = db, lifetime

    def open(self, user: str, stamp: str) -> tuple[str, str]:
        secret, csrf = new_session()
        now = time.time()
        with self.db.connection() as conn, conn.transaction():
            conn.execute("DELETE FROM mlapi_console_sessions WHERE expires < %s", (now,))
            added = conn.execute(
                "INSERT INTO mlapi_console_sessions SELECT %s, name, %s, %s, %s "
                "FROM mlapi_users WHERE name = %s RETURNING 1",
                (rules.digest(secret), csrf, stamp, now + self.lifetime, user),
            ).fetchone()
        if added is None:
            raise UserError(f"no user named {user!r}")
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


def copy_files(folder: Path, db: Database) -> dict[str, tuple[int, int]]:
    """Copy the TinyDB files in `folder` (users, API keys, the signing secret, the gallery)
    into the database: {what: (copied, already there)}. Rows keep their ids and hashes, so
    keys, tokens and samples go on working, and a second run copies nothing again."""
    users = FileSnapshot(folder / "users.json").read()[0]
    gallery = FileSnapshot(folder / "gallery.json").read()[0]
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

    with db.connection() as conn, conn.transaction():
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
    return counts
