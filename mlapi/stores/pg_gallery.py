"""The face gallery in PostgreSQL: samples in rows, read in binary, kept in memory per
model until a version counter that every change bumps has moved (see postgres.py)."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

import numpy as np
import psycopg

from mlapi import text
from mlapi.errors import (
    GalleryError,
    UnknownPerson,
)
from mlapi.stores import Match, Sample, rules
from mlapi.stores.database import (
    Database,
)
from mlapi.stores.matching import Index


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
