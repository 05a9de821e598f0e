"""The faces seen, in PostgreSQL: the `Sightings` store that replicas share.

The same semantics as the TinyDB store (sightings.py, the reference): a sighting is one
row of `mlapi_sightings` (its faceprint as float32 little-endian bytes, its picture beside
it, so deleting a row deletes its picture), and a cluster is the unknown sightings sharing
its id.

To place an unknown face, `record` needs each cluster's centroid, not every faceprint:
`mlapi_clusters` keeps each cluster's faceprint sum (float64) and count, changed in the
same transaction as the rows by every write (record, retention, merge, move_out,
attribute, unattribute, forget). Computing centroids from the rows instead would read
every unknown faceprint (10,000 by default) on each batch. Each replica also keeps the
sums in memory under a version counter that every write bumps, so a replica that is the
only writer reads no sums at all, and one that sees another's write reads them once.

Every write takes one advisory lock for its transaction: two replicas recording the same
new face at once would otherwise each start a cluster for it, and a sum read, changed and
written back must not interleave with another. Writes are few (a batch a second per
replica, and people naming faces), so one lock costs nothing.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import psycopg

from mlapi.errors import UnknownSighting
from mlapi.sightings.clustering import Centroids
from mlapi.similarity import normalise
from mlapi.stores import Cluster, NewSighting, Retention, Sighting, rules
from mlapi.stores.database import Database

SIGHTINGS_LOCK = 0x6D6C7369  # "mlsi": one writer of the faces seen at a time
COLUMNS = "id, seen, model, box, quality, person, similarity, source, route, client, cluster"
OUTER = ", ".join(f"s.{c}" for c in COLUMNS.split(", "))
INSERT = (
    "INSERT INTO mlapi_sightings (id, seen, model, embedding, box, quality, person, "
    "similarity, source, route, client, cluster, picture) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
)
Conn = psycopg.Connection[Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Sums:
    """A cluster's row in mlapi_clusters."""

    model: str
    total: np.ndarray  # float64: the sum of its faceprints
    count: int


Changes = dict[str, Sums | None]  # cluster → its new sums, or None: gone


def packed(embedding: np.ndarray) -> bytes:
    return np.asarray(embedding, "<f4").tobytes()


def unpacked(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, "<f4")


def as_sighting(row: Sequence[Any]) -> Sighting:
    """A row of COLUMNS."""
    box = row[3]
    return Sighting(
        id=row[0],
        seen=float(row[1]),
        model=row[2],
        box=(int(box[0]), int(box[1]), int(box[2]), int(box[3])),
        quality=float(row[4]),
        person=row[5],
        similarity=float(row[6]),
        source=row[7],
        route=row[8],
        client=row[9],
        cluster=row[10],
    )


class Deltas:
    """Changes to clusters' sums, gathered during a write and applied once."""

    def __init__(self) -> None:
        self.by: dict[str, tuple[str, np.ndarray | None, int]] = {}

    def add(self, cluster: str, model: str, embedding: np.ndarray, sign: int = 1) -> None:
        _, total, count = self.by.get(cluster, (model, None, 0))
        vector = np.asarray(embedding, np.float64) * sign
        self.by[cluster] = (model, vector if total is None else total + vector, count + sign)

    def removed(self, rows: Iterable[Sequence[Any]]) -> None:
        """Deleted rows as (cluster, model, embedding or None for a known face's)."""
        for cluster, model, blob in rows:
            if cluster is not None and blob is not None:
                self.add(cluster, model, unpacked(bytes(blob)), -1)


class PgSightings:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._sums: tuple[int, dict[str, Sums]] | None = None  # (version, every cluster)
        self._listed: tuple[tuple[int, int], list[Cluster]] | None = None  # (version, best)

    # -- reading ---------------------------------------------------------------------------
    def clusters(self, best: int = 6) -> list[Cluster]:
        """Read again only when a write moved the version counter since (faces seen, or
        people naming them): listing 10,000 unknown faces takes a few hundred ms."""
        with self.db.connection() as conn:
            version = self._version(conn)
            with self._lock:
                if self._listed is not None and self._listed[0] == (version, best):
                    return list(self._listed[1])
            found = self._read_clusters(conn, None, best)
        with self._lock:
            self._listed = (version, best), found
        return list(found)

    def warm(self) -> None:
        self.clusters()  # the API's page (6 faces a group): one version read if unchanged

    def cluster(self, cluster_id: str) -> Cluster:
        with self.db.connection() as conn:
            found = self._read_clusters(conn, cluster_id, None)
        if not found:
            raise UnknownSighting(f"no group of unknown faces {cluster_id!r}")
        return found[0]

    @staticmethod
    def _version(conn: Conn) -> int:
        row = conn.execute("SELECT version FROM mlapi_sightings_version").fetchone()
        return int(row[0]) if row else 0

    def _read_clusters(self, conn: Conn, only: str | None, best: int | None) -> list[Cluster]:
        """Clusters (one, or all) with their `best` sightings (None: all), in one statement
        (one snapshot): each cluster's count and times by window, its sum from
        mlapi_clusters on its best row; the most recently seen first."""
        where = "person IS NULL AND cluster IS NOT NULL"
        args: list[Any] = []
        if only is not None:
            where += " AND cluster = %s"
            args.append(only)
        args.append(max(best, 1) if best is not None else 2**31 - 1)  # its head row, always
        sql = (
            f"SELECT {OUTER}, place, n, first_seen, last_seen, c.total, c.count FROM ("
            f"SELECT {COLUMNS}, row_number() OVER (PARTITION BY cluster "
            'ORDER BY quality DESC, id COLLATE "C") AS place, '
            "count(*) OVER (PARTITION BY cluster) AS n, "
            "min(seen) OVER (PARTITION BY cluster) AS first_seen, "
            "max(seen) OVER (PARTITION BY cluster) AS last_seen "
            f"FROM mlapi_sightings WHERE {where}) AS s "
            "LEFT JOIN mlapi_clusters AS c ON c.id = s.cluster AND s.place = 1 "
            "WHERE place <= %s"
        )
        with conn.cursor(binary=True) as cursor:
            rows = cursor.execute(sql, args).fetchall()
        members: dict[str, list[tuple[int, Sighting]]] = {}
        heads: dict[str, Sequence[Any]] = {}
        for row in rows:
            members.setdefault(row[10], []).append((row[11], as_sighting(row)))
            if row[11] == 1:
                heads[row[10]] = row
        unsummed = [c for c, h in heads.items() if h[15] is None or h[16] != h[12]]
        recomputed = self._recompute(conn, unsummed) if unsummed else {}
        order = sorted(heads, key=lambda c: (-heads[c][14], c))
        totals = [
            np.frombuffer(heads[c][15], "<f8") if c not in recomputed else recomputed[c].total
            for c in order
        ]
        centroids = normalise(np.stack(totals)).astype(np.float32) if totals else np.zeros(0)
        keep = None if best is None else max(best, 0)
        found = []
        for cluster, centroid in zip(order, centroids, strict=True):
            head = heads[cluster]
            mine = [s for _, s in sorted(members[cluster], key=lambda pair: pair[0])]
            found.append(
                Cluster(
                    id=cluster,
                    model=head[2],
                    count=int(head[12]),
                    first_seen=float(head[13]),
                    last_seen=float(head[14]),
                    centroid=centroid,
                    sightings=tuple(mine[:keep]),
                )
            )
        return found

    @staticmethod
    def _recompute(conn: Conn, clusters: Sequence[str]) -> dict[str, Sums]:
        """Clusters' sums from their rows (where mlapi_clusters lacks or disagrees: never,
        unless someone edited the tables by hand)."""
        deltas = Deltas()
        rows = conn.execute(
            "SELECT cluster, model, embedding FROM mlapi_sightings "
            "WHERE person IS NULL AND cluster = ANY(%s)",
            (list(clusters),),
        )
        for cluster, model, blob in rows:
            deltas.add(cluster, model, unpacked(bytes(blob)))
        return {
            c: Sums(model, total, count)
            for c, (model, total, count) in deltas.by.items()
            if total is not None
        }

    def sighting(self, sighting_id: str) -> Sighting:
        with self.db.connection() as conn:
            row = conn.execute(
                f"SELECT {COLUMNS} FROM mlapi_sightings WHERE id = %s", (sighting_id,)
            ).fetchone()
        if row is None:
            raise UnknownSighting(f"no sighting {sighting_id!r}")
        return as_sighting(row)

    def embeddings(self, sighting_ids: Sequence[str]) -> dict[str, np.ndarray]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT id, embedding FROM mlapi_sightings WHERE id = ANY(%s)",
                (list(sighting_ids),),
            ).fetchall()
        found = {i: unpacked(bytes(blob)) for i, blob in rows}
        return {i: found[i] for i in sighting_ids if i in found}

    def picture(self, sighting_id: str) -> bytes | None:
        with self.db.connection() as conn:
            row = conn.execute(
                "SELECT picture FROM mlapi_sightings WHERE id = %s", (sighting_id,)
            ).fetchone()
        return bytes(row[0]) if row and row[0] is not None else None

    def seen(self, person: str, limit: int = 50, offset: int = 0) -> list[Sighting]:
        with self.db.connection() as conn:
            rows = conn.execute(
                f"SELECT {COLUMNS} FROM mlapi_sightings WHERE person = %s "
                'ORDER BY seen DESC, id COLLATE "C" LIMIT %s OFFSET %s',
                (person, max(limit, 0), max(offset, 0)),
            ).fetchall()
        return [as_sighting(r) for r in rows]

    def last_seen(self) -> dict[str, float]:
        with self.db.connection() as conn:
            rows = conn.execute(
                "SELECT person, max(seen) FROM mlapi_sightings "
                "WHERE person IS NOT NULL AND seen > 0 GROUP BY person"
            ).fetchall()
        return {person: float(seen) for person, seen in rows}

    # -- writing ---------------------------------------------------------------------------
    def _begin(self, conn: Conn) -> int:
        """Within a write's transaction: the lock, then the version it found."""
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (SIGHTINGS_LOCK,))
        return self._version(conn)

    def _write_sums(self, conn: Conn, deltas: Deltas) -> Changes:
        """Apply `deltas` to mlapi_clusters (a cluster counting none is deleted) and bump
        the version counter; the clusters' new sums."""
        changes: Changes = {}
        if deltas.by:
            rows = conn.execute(
                "SELECT id, total, count FROM mlapi_clusters WHERE id = ANY(%s)",
                (list(deltas.by),),
            ).fetchall()
            now = {c: (np.frombuffer(bytes(t), "<f8"), int(n)) for c, t, n in rows}
            upserts: list[tuple[str, str, bytes, int]] = []
            for cluster, (model, delta, count) in deltas.by.items():
                total, was = now.get(cluster, (None, 0))
                if delta is not None:
                    total = delta if total is None else total + delta
                if total is None or was + count <= 0:
                    changes[cluster] = None
                    continue
                changes[cluster] = Sums(model, total, was + count)
                upserts.append((cluster, model, np.asarray(total, "<f8").tobytes(), was + count))
            gone = [c for c, s in changes.items() if s is None]
            if gone:
                conn.execute("DELETE FROM mlapi_clusters WHERE id = ANY(%s)", (gone,))
            if upserts:
                with conn.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO mlapi_clusters VALUES (%s, %s, %s, %s) ON CONFLICT (id) "
                        "DO UPDATE SET total = EXCLUDED.total, count = EXCLUDED.count",
                        upserts,
                    )
        conn.execute("UPDATE mlapi_sightings_version SET version = version + 1")
        return changes

    def _committed(self, version: int, changes: Changes, cleared: bool = False) -> None:
        """After a write committed at `version` + 1: the sums kept in memory follow it, if
        they were those of `version` (else they are re-read when next needed). A write
        that failed leaves them as they are: the database is still at `version`, or, if
        the commit went through unseen, at another, which makes them re-read."""
        with self._lock:
            if cleared:
                self._sums = (version + 1, {})
            elif self._sums is not None and self._sums[0] == version:
                sums = self._sums[1]
                for cluster, now in changes.items():
                    if now is None:
                        sums.pop(cluster, None)
                    else:
                        sums[cluster] = now
                self._sums = (version + 1, sums)
            else:
                self._sums = None

    def _centroids(self, conn: Conn, version: int, models: set[str]) -> dict[str, Centroids]:
        """Each model's clusters, to place new unknown faces: from memory when nobody
        wrote since, else read once."""
        with self._lock:
            kept = self._sums[1] if self._sums and self._sums[0] == version else None
            sums = dict(kept) if kept is not None else None
        if sums is None:
            sums = {}
            with conn.cursor() as cursor:
                cursor.execute("SELECT id, model, total, count FROM mlapi_clusters")
                while rows := cursor.fetchmany(1000):
                    for cluster, model, total, count in rows:
                        sums[cluster] = Sums(model, np.frombuffer(total, "<f8"), int(count))
            with self._lock:
                self._sums = (version, dict(sums))
        listed = [(c, s) for c, s in sums.items() if s.model in models]
        found = {model: Centroids(model) for model in models}
        for cluster, s in sorted(listed, key=lambda pair: pair[0]):
            found[s.model].add(cluster, s.total, s.count)
        return found

    def record(self, batch: Sequence[NewSighting], keep: Retention) -> int:
        if not batch:
            return 0
        ordered = sorted(batch, key=lambda n: n.seen)
        models = {n.model for n in ordered if n.person is None}
        deltas = Deltas()
        with self.db.connection() as conn, conn.transaction():
            version = self._begin(conn)
            centroids = self._centroids(conn, version, models)
            last = self._last_kept(conn, ordered[0].seen - keep.every) if keep.every > 0 else {}
            rows: list[tuple[Any, ...]] = []
            for new in ordered:
                cluster = None
                if new.person is None:
                    place = centroids[new.model]
                    cluster = place.join(new.embedding, keep.join_at)
                    if cluster is None:
                        cluster = secrets.token_hex(6)
                        place.add(cluster, new.embedding)
                key = (new.source, new.person or f"cluster {cluster}")
                if keep.every > 0 and new.seen - last.get(key, -1e18) < keep.every:
                    continue  # the same face from the same source a moment ago
                last[key] = new.seen
                rows.append(_row(secrets.token_hex(6), new, cluster))
                if cluster is not None:
                    deltas.add(cluster, new.model, new.embedding)
            if rows:
                with conn.cursor() as cursor:
                    cursor.executemany(INSERT, rows)
            deltas.removed(self._expire(conn, keep, time.time()))
            changes = self._write_sums(conn, deltas)
        self._committed(version, changes)
        return len(rows)

    @staticmethod
    def _last_kept(conn: Conn, since: float) -> dict[tuple[str, str], float]:
        """When each (source, person or cluster) was last kept, of those kept after `since`
        (an earlier one cannot make a face of this batch a repeat)."""
        rows = conn.execute(
            "SELECT source, COALESCE(NULLIF(person, ''), 'cluster ' || COALESCE(cluster, 'None')),"
            " max(seen) FROM mlapi_sightings WHERE seen > %s GROUP BY 1, 2",
            (since - 1.0,),
        )
        return {(source, who): float(seen) for source, who, seen in rows}

    @staticmethod
    def _expire(conn: Conn, keep: Retention, now: float) -> list[tuple[Any, ...]]:
        """Delete the sightings past `keep.days`, then the oldest beyond `keep.most`: the
        deleted rows as (cluster, model, embedding of an unknown face)."""
        returning = "RETURNING cluster, model, CASE WHEN person IS NULL THEN embedding END"
        gone = conn.execute(
            f"DELETE FROM mlapi_sightings WHERE seen < %s {returning}",
            (now - keep.days * 86400,),
        ).fetchall()
        row = conn.execute("SELECT count(*) FROM mlapi_sightings").fetchone()
        over = (int(row[0]) if row else 0) - max(keep.most, 0)
        if over > 0:
            gone += conn.execute(
                "DELETE FROM mlapi_sightings WHERE id IN (SELECT id FROM mlapi_sightings "
                f"ORDER BY seen, n LIMIT %s) {returning}",
                (over,),
            ).fetchall()
        return gone

    def _write(self, change: Callable[[Conn, Deltas], T]) -> T:
        """Run `change(conn, deltas)` in a write transaction, then keep the sums."""
        deltas = Deltas()
        with self.db.connection() as conn, conn.transaction():
            version = self._begin(conn)
            outcome = change(conn, deltas)
            changes = self._write_sums(conn, deltas)
        self._committed(version, changes)
        return outcome

    @staticmethod
    def _unknown_or_known(conn: Conn, sighting_id: str) -> tuple[Any, ...]:
        """(person, cluster, model, embedding) of a sighting, locked; UnknownSighting."""
        row = conn.execute(
            "SELECT person, cluster, model, embedding FROM mlapi_sightings WHERE id = %s "
            "FOR UPDATE",
            (sighting_id,),
        ).fetchone()
        if row is None:
            raise UnknownSighting(f"no sighting {sighting_id!r}")
        return tuple(row)

    def attribute(self, sighting_ids: Sequence[str], person: str) -> int:
        person = rules.person_name(person)
        wanted = sorted(set(sighting_ids))

        def change(conn: Conn, deltas: Deltas) -> int:
            rows = conn.execute(
                "SELECT id, person, cluster, model, embedding FROM mlapi_sightings "
                "WHERE id = ANY(%s) FOR UPDATE",
                (wanted,),
            ).fetchall()
            missing = set(wanted) - {r[0] for r in rows}
            if missing:
                raise UnknownSighting(f"no sighting {sorted(missing)[0]!r}")
            deltas.removed((cluster, model, blob) for _, was, cluster, model, blob in rows
                           if was is None)  # fmt: skip
            conn.execute(
                "UPDATE mlapi_sightings SET person = %s, cluster = NULL WHERE id = ANY(%s)",
                (person, wanted),
            )
            return len(wanted)

        return self._write(change)

    def unattribute(self, sighting_id: str) -> str:
        cluster = secrets.token_hex(6)

        def change(conn: Conn, deltas: Deltas) -> str:
            person, was, model, blob = self._unknown_or_known(conn, sighting_id)
            embedding = unpacked(bytes(blob))
            if person is None and was is not None:
                deltas.add(was, model, embedding, -1)
            deltas.add(cluster, model, embedding)
            conn.execute(
                "UPDATE mlapi_sightings SET person = NULL, similarity = 0, cluster = %s "
                "WHERE id = %s",
                (cluster, sighting_id),
            )
            return cluster

        return self._write(change)

    def merge(self, cluster_ids: Sequence[str]) -> str:
        if not cluster_ids:
            raise UnknownSighting("name at least one group to merge")
        into = cluster_ids[0]

        def change(conn: Conn, deltas: Deltas) -> str:
            rows = conn.execute(
                "SELECT DISTINCT cluster, model FROM mlapi_sightings "
                "WHERE person IS NULL AND cluster = ANY(%s)",
                (list(cluster_ids),),
            ).fetchall()
            models: dict[str, set[str]] = {}
            for cluster, model in rows:
                models.setdefault(cluster, set()).add(model)
            for c in cluster_ids:
                if c not in models:
                    raise UnknownSighting(f"no group of unknown faces {c!r}")
            if len(set().union(*models.values())) > 1:
                raise UnknownSighting("groups of different faceprint models cannot be merged")
            others = [c for c in dict.fromkeys(cluster_ids[1:]) if c != into]
            if not others:
                return into
            moved = conn.execute(
                "SELECT cluster, model, embedding FROM mlapi_sightings "
                "WHERE person IS NULL AND cluster = ANY(%s) FOR UPDATE",
                (others,),
            ).fetchall()
            conn.execute(
                "UPDATE mlapi_sightings SET cluster = %s "
                "WHERE person IS NULL AND cluster = ANY(%s)",
                (into, others),
            )
            deltas.removed(moved)
            for _, model, blob in moved:
                deltas.add(into, model, unpacked(bytes(blob)))
            return into

        return self._write(change)

    def move_out(self, sighting_id: str) -> str:
        cluster = secrets.token_hex(6)

        def change(conn: Conn, deltas: Deltas) -> str:
            person, was, model, blob = self._unknown_or_known(conn, sighting_id)
            if person is not None:
                raise UnknownSighting(f"sighting {sighting_id!r} is not of an unknown face")
            embedding = unpacked(bytes(blob))
            if was is not None:
                deltas.add(was, model, embedding, -1)
            deltas.add(cluster, model, embedding)
            conn.execute(
                "UPDATE mlapi_sightings SET cluster = %s WHERE id = %s", (cluster, sighting_id)
            )
            return cluster

        return self._write(change)

    def forget(self, cluster_id: str) -> int:
        def change(conn: Conn, deltas: Deltas) -> int:
            gone = conn.execute(
                "DELETE FROM mlapi_sightings WHERE person IS NULL AND cluster = %s "
                "RETURNING cluster, model, embedding",
                (cluster_id,),
            ).fetchall()
            if not gone:
                raise UnknownSighting(f"no group of unknown faces {cluster_id!r}")
            deltas.removed(gone)
            return len(gone)

        return self._write(change)

    def forget_sighting(self, sighting_id: str) -> None:
        def change(conn: Conn, deltas: Deltas) -> None:
            gone = conn.execute(
                "DELETE FROM mlapi_sightings WHERE id = %s "
                "RETURNING cluster, model, CASE WHEN person IS NULL THEN embedding END",
                (sighting_id,),
            ).fetchall()
            if not gone:
                raise UnknownSighting(f"no sighting {sighting_id!r}")
            deltas.removed(gone)

        self._write(change)

    def forget_all(self) -> int:
        with self.db.connection() as conn, conn.transaction():
            version = self._begin(conn)
            row = conn.execute("SELECT count(*) FROM mlapi_sightings").fetchone()
            conn.execute("DELETE FROM mlapi_sightings")
            conn.execute("DELETE FROM mlapi_clusters")
            self._write_sums(conn, Deltas())
        self._committed(version, {}, cleared=True)
        return int(row[0]) if row else 0

    def renamed(self, old: str, new: str) -> int:
        with self.db.connection() as conn:
            moved = conn.execute(
                "UPDATE mlapi_sightings SET person = %s WHERE person = %s", (new, old)
            ).rowcount
        return max(moved, 0)


def _row(sighting_id: str, new: NewSighting, cluster: str | None) -> tuple[Any, ...]:
    """A new sighting's values for INSERT, rounded as the TinyDB store rounds them."""
    return (
        sighting_id,
        round(new.seen, 3),
        new.model,
        packed(new.embedding),
        [int(v) for v in new.box],
        round(float(new.quality), 4),
        new.person,
        round(float(new.similarity), 4),
        new.source,
        new.route,
        new.client,
        cluster,
        new.picture,
    )


def rebuild_sums(conn: Conn) -> int:
    """Every cluster's sums again from the rows (after `db copy` added sightings); the
    caller holds a transaction. How many clusters there are."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (SIGHTINGS_LOCK,))
    deltas = Deltas()
    with conn.cursor() as cursor:
        cursor.execute(
            "SELECT cluster, model, embedding FROM mlapi_sightings "
            "WHERE person IS NULL AND cluster IS NOT NULL"
        )
        while rows := cursor.fetchmany(1000):
            for cluster, model, blob in rows:
                deltas.add(cluster, model, unpacked(bytes(blob)))
    conn.execute("DELETE FROM mlapi_clusters")
    with conn.cursor() as cursor:
        cursor.executemany(
            "INSERT INTO mlapi_clusters VALUES (%s, %s, %s, %s)",
            [
                (c, model, np.asarray(total, "<f8").tobytes(), count)
                for c, (model, total, count) in deltas.by.items()
                if total is not None
            ],
        )
    conn.execute("UPDATE mlapi_sightings_version SET version = version + 1")
    return len(deltas.by)
