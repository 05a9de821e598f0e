"""The faces seen, in a TinyDB file: the embedded `Sightings` store.

`sightings.json` holds one document per sighting (its faceprint as base64 float32, which
parses ten times faster than a list of numbers); each picture is a file `sightings/ID.jpg`
beside it. A cluster is no document of its own: it is the sightings that share its id, so
merging, moving and naming are edits of those sightings, and nothing can disagree.

Each change reads the file once and writes it once, under the inter-process lock (the CLI
naming a cluster while a server records). Readers keep a parsed view, refreshed when the
file changes; a writer hands its own view the content it wrote, so the server never parses
back what it just wrote.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from mlapi.errors import UnknownSighting
from mlapi.sightings.clustering import Centroids
from mlapi.similarity import normalise
from mlapi.stores import Cluster, NewSighting, Retention, Sighting, rules
from mlapi.stores.files import locked_file, write_private
from mlapi.stores.gallery import SAMPLE_ID, loads_in_pieces

T = TypeVar("T")
TABLE = "sightings"
Rows = dict[str, dict[str, Any]]  # TinyDB's document id → document


def pack(embedding: np.ndarray) -> str:
    return base64.b64encode(np.asarray(embedding, "<f4").tobytes()).decode()


def unpack(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), "<f4")


def as_sighting(row: dict[str, Any]) -> Sighting:
    box = row["box"]
    return Sighting(
        id=row["id"],
        seen=float(row["seen"]),
        model=row["model"],
        box=(int(box[0]), int(box[1]), int(box[2]), int(box[3])),
        quality=float(row["quality"]),
        person=row.get("person"),
        similarity=float(row.get("similarity", 0.0)),
        source=row.get("source", ""),
        route=row.get("route", ""),
        client=row.get("client", ""),
        cluster=row.get("cluster"),
    )


@dataclass
class View:
    """The file's sightings as read: each one, its faceprint, and the clusters they make."""

    rows: Rows = field(default_factory=dict)
    sightings: dict[str, Sighting] = field(default_factory=dict)  # by sighting id
    doc_ids: dict[str, str] = field(default_factory=dict)  # sighting id → document id
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    members: dict[str, list[str]] = field(default_factory=dict)  # cluster → ids, best first
    _sums: dict[str, tuple[str, np.ndarray, np.ndarray]] | None = None  # cluster → sums
    _clusters: list[Cluster] | None = None

    @classmethod
    def of(cls, rows: Rows, previous: View | None = None) -> View:
        """The view of `rows`; a document `previous` already read (the same object: a
        change replaces documents, never edits one) is not converted again."""
        view = cls(rows)
        known = previous.rows if previous is not None else {}
        fresh: list[tuple[str, str]] = []  # (sighting id, packed faceprint) to decode
        for doc_id, row in rows.items():
            if known.get(doc_id) is row and previous is not None:
                s = previous.sightings[row["id"]]
                view.vectors[s.id] = previous.vectors[s.id]
            else:
                s = as_sighting(row)
                fresh.append((s.id, row["embedding"]))
            view.sightings[s.id] = s
            view.doc_ids[s.id] = doc_id
            if s.person is None and s.cluster:
                view.members.setdefault(s.cluster, []).append(s.id)
        view.vectors.update(unpack_all(fresh))
        for ids in view.members.values():
            ids.sort(key=lambda i: (-view.sightings[i].quality, i))
        return view

    def sums(self) -> dict[str, tuple[str, np.ndarray, np.ndarray]]:
        """Each cluster's model, faceprint sum and centroid, one pass per model; made once."""
        if self._sums is None:
            self._sums = {}
            for model, (clusters, totals) in self._model_sums().items():
                centroids = normalise(totals).astype(np.float32)
                for at, cluster in enumerate(clusters):
                    self._sums[cluster] = (model, totals[at], centroids[at])
        return self._sums

    def _model_sums(self) -> dict[str, tuple[list[str], np.ndarray]]:
        """Per model: its clusters and their faceprint sums, one row each."""
        by_model: dict[str, list[str]] = {}
        for cluster, ids in self.members.items():
            by_model.setdefault(self.sightings[ids[0]].model, []).append(cluster)
        found = {}
        for model, clusters in by_model.items():
            counts = [len(self.members[c]) for c in clusters]
            stacked = np.stack([self.vectors[i] for c in clusters for i in self.members[c]])
            starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
            found[model] = (clusters, np.add.reduceat(stacked, starts, dtype=np.float64))
        return found

    def cluster(self, cluster_id: str, best: int | None = None) -> Cluster:
        ids = self.members.get(cluster_id)
        if not ids:
            raise UnknownSighting(f"no group of unknown faces {cluster_id!r}")
        seen = [self.sightings[i].seen for i in ids]
        model, _, middle = self.sums()[cluster_id]
        return Cluster(
            id=cluster_id,
            model=model,
            count=len(ids),
            first_seen=min(seen),
            last_seen=max(seen),
            centroid=middle,
            sightings=tuple(self.sightings[i] for i in ids[:best]),
        )

    def clusters(self) -> list[Cluster]:
        """Every cluster with all its sightings (best first), the most recently seen first;
        made once per view."""
        if self._clusters is None:
            found = [self.cluster(c) for c in self.members]
            self._clusters = sorted(found, key=lambda c: (-c.last_seen, c.id))
        return self._clusters

    def centroids(self) -> dict[str, Centroids]:
        """Each faceprint model's clusters, to place new unknown faces."""
        return {
            model: Centroids.of_sums(
                model, clusters, totals, [len(self.members[c]) for c in clusters]
            )
            for model, (clusters, totals) in self._model_sums().items()
        }


def rows_text(rows: Rows) -> bytes:
    """The file: TinyDB's layout, one document a line, so a reader can parse it a few
    hundred documents at a time (see read_rows)."""
    lines = ",\n".join(f"{json.dumps(d)}: {json.dumps(r, sort_keys=True)}" for d, r in rows.items())
    return f'{{"{TABLE}": {{\n{lines}\n}}}}\n'.encode()


PARSE_LINES = 500  # documents parsed at a stretch: about 2 ms with the GIL held


def read_rows(data: bytes) -> Rows:
    """The documents of `data`. A file as rows_text writes it is parsed a few hundred
    documents at a time, letting other threads (the server's event loop) run between; one
    written otherwise (by hand, by TinyDB) a document at a time (gallery.loads_in_pieces)."""
    lines = data.split(b"\n")
    if len(lines) < 3 or lines[0] != f'{{"{TABLE}": {{'.encode() or lines[-2:] != [b"}}", b""]:
        content = loads_in_pieces(data or b"{}")
        table = content.get(TABLE, {}) if isinstance(content, dict) else {}
        return table if isinstance(table, dict) else {}
    body = lines[1:-2]
    rows: Rows = {}
    for start in range(0, len(body), PARSE_LINES):
        chunk = b"\n".join(body[start : start + PARSE_LINES]).rstrip(b",")
        rows.update(json.loads(b"{" + chunk + b"}"))
        time.sleep(0)  # let the event loop answer between stretches
    return rows


def unpack_all(packed: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    """Many packed faceprints at once: one array per length, each row a view of it."""
    by_length: dict[int, list[tuple[str, str]]] = {}
    for sighting_id, text in packed:
        by_length.setdefault(len(text), []).append((sighting_id, text))
    found: dict[str, np.ndarray] = {}
    for group in by_length.values():
        raw = b"".join(binascii.a2b_base64(t) for _, t in group)
        flat = np.frombuffer(raw, "<f4").reshape(len(group), -1)
        found.update((sighting_id, flat[at]) for at, (sighting_id, _) in enumerate(group))
    return found


class FileSightings:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.pictures = path.parent / "sightings"
        self._stamp: tuple[int, int, int] | None = None
        self._view = View()
        self._lock = threading.Lock()

    # -- reading ---------------------------------------------------------------------------
    def _read(self) -> View:
        """The file's view, parsed again only when another writer changed it."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            with self._lock:
                self._stamp, self._view = None, View()
                return self._view
        stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                rows = read_rows(self.path.read_bytes())
                self._view, self._stamp = View.of(rows), stamp
            return self._view

    def clusters(self, best: int = 6) -> list[Cluster]:
        return [
            Cluster(c.id, c.model, c.count, c.first_seen, c.last_seen, c.centroid,
                    c.sightings[:best])
            for c in self._read().clusters()
        ]  # fmt: skip

    def cluster(self, cluster_id: str) -> Cluster:
        return self._read().cluster(cluster_id)

    def sighting(self, sighting_id: str) -> Sighting:
        found = self._read().sightings.get(sighting_id)
        if found is None:
            raise UnknownSighting(f"no sighting {sighting_id!r}")
        return found

    def embeddings(self, sighting_ids: Sequence[str]) -> dict[str, np.ndarray]:
        vectors = self._read().vectors
        return {i: vectors[i] for i in sighting_ids if i in vectors}

    def picture(self, sighting_id: str) -> bytes | None:
        if not SAMPLE_ID.fullmatch(sighting_id):
            return None
        try:
            return (self.pictures / f"{sighting_id}.jpg").read_bytes()
        except OSError:
            return None

    def seen(self, person: str, limit: int = 50, offset: int = 0) -> list[Sighting]:
        mine = [s for s in self._read().sightings.values() if s.person == person]
        mine.sort(key=lambda s: (-s.seen, s.id))
        return mine[offset : offset + limit]

    def warm(self) -> None:
        self._read().clusters()

    def last_seen(self) -> dict[str, float]:
        last: dict[str, float] = {}
        for s in self._read().sightings.values():
            if s.person is not None and s.seen > last.get(s.person, 0.0):
                last[s.person] = s.seen
        return last

    # -- writing ---------------------------------------------------------------------------
    def _change(self, edit: Callable[[View, Rows], T]) -> T:
        """Apply `edit` to a copy of the documents (it replaces documents, never changes
        one in place: readers share them) and write the result once, under the lock; the
        pictures of the sightings it removed go after."""
        with locked_file(self.path):
            view = self._read()
            rows = dict(view.rows)
            outcome = edit(view, rows)
            if rows != view.rows:
                write_private(self.path, rows_text(rows))
                st = os.stat(self.path)
                with self._lock:
                    self._view = View.of(rows, view)
                    self._stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
            kept = {row["id"] for row in rows.values()}
            for sighting_id in set(view.sightings) - kept:
                self._unlink(sighting_id)
            return outcome

    def _unlink(self, sighting_id: str) -> None:
        with contextlib.suppress(OSError):
            (self.pictures / f"{sighting_id}.jpg").unlink()

    def record(self, batch: Sequence[NewSighting], keep: Retention) -> int:
        if not batch:
            return 0
        written: list[str] = []  # pictures, removed again if the documents are not

        def edit(view: View, rows: Rows) -> int:
            centroids = view.centroids()
            last = _last_kept(view.sightings.values())
            next_doc = max((int(d) for d in rows), default=0) + 1
            kept = 0
            self.pictures.mkdir(mode=0o700, parents=True, exist_ok=True)
            for new in sorted(batch, key=lambda n: n.seen):
                cluster = None
                if new.person is None:
                    place = centroids.setdefault(new.model, Centroids(new.model))
                    cluster = place.join(new.embedding, keep.join_at)
                    if cluster is None:
                        cluster = secrets.token_hex(6)
                        place.add(cluster, new.embedding)
                key = (new.source, new.person or f"cluster {cluster}")
                if keep.every > 0 and new.seen - last.get(key, -1e18) < keep.every:
                    continue  # the same face from the same source a moment ago
                last[key] = new.seen
                sighting_id = secrets.token_hex(6)
                # The picture before the document, so a listed sighting never lacks one.
                write_private(self.pictures / f"{sighting_id}.jpg", new.picture)
                written.append(sighting_id)
                rows[str(next_doc)] = _row(sighting_id, new, cluster)
                next_doc += 1
                kept += 1
            for doc_id in _expired(rows, keep, time.time()):
                rows.pop(doc_id)
            return kept

        try:
            return self._change(edit)
        except BaseException:  # no picture without its document
            for sighting_id in written:
                self._unlink(sighting_id)
            raise

    def attribute(self, sighting_ids: Sequence[str], person: str) -> int:
        person = rules.person_name(person)
        wanted = set(sighting_ids)

        def edit(view: View, rows: Rows) -> int:
            missing = wanted - set(view.sightings)
            if missing:
                raise UnknownSighting(f"no sighting {sorted(missing)[0]!r}")
            for i in wanted:
                doc = view.doc_ids[i]
                rows[doc] = {**rows[doc], "person": person, "cluster": None}
            return len(wanted)

        return self._change(edit)

    def unattribute(self, sighting_id: str) -> str:
        cluster = secrets.token_hex(6)

        def edit(view: View, rows: Rows) -> str:
            doc = _doc(view, sighting_id)
            rows[doc] = {**rows[doc], "person": None, "similarity": 0.0, "cluster": cluster}
            return cluster

        return self._change(edit)

    def merge(self, cluster_ids: Sequence[str]) -> str:
        if not cluster_ids:
            raise UnknownSighting("name at least one group to merge")
        into = cluster_ids[0]

        def edit(view: View, rows: Rows) -> str:
            models = set()
            for c in cluster_ids:
                if c not in view.members:
                    raise UnknownSighting(f"no group of unknown faces {c!r}")
                models.add(view.sightings[view.members[c][0]].model)
            if len(models) > 1:
                raise UnknownSighting("groups of different faceprint models cannot be merged")
            for c in cluster_ids[1:]:
                for i in view.members[c]:
                    doc = view.doc_ids[i]
                    rows[doc] = {**rows[doc], "cluster": into}
            return into

        return self._change(edit)

    def move_out(self, sighting_id: str) -> str:
        cluster = secrets.token_hex(6)

        def edit(view: View, rows: Rows) -> str:
            doc = _doc(view, sighting_id)
            if view.sightings[sighting_id].person is not None:
                raise UnknownSighting(f"sighting {sighting_id!r} is not of an unknown face")
            rows[doc] = {**rows[doc], "cluster": cluster}
            return cluster

        return self._change(edit)

    def forget(self, cluster_id: str) -> int:
        def edit(view: View, rows: Rows) -> int:
            ids = view.members.get(cluster_id)
            if not ids:
                raise UnknownSighting(f"no group of unknown faces {cluster_id!r}")
            for i in ids:
                rows.pop(view.doc_ids[i])
            return len(ids)

        return self._change(edit)

    def forget_sighting(self, sighting_id: str) -> None:
        def edit(view: View, rows: Rows) -> None:
            rows.pop(_doc(view, sighting_id))

        self._change(edit)

    def forget_all(self) -> int:
        def edit(view: View, rows: Rows) -> int:
            count = len(rows)
            rows.clear()
            return count

        return self._change(edit)

    def renamed(self, old: str, new: str) -> int:
        def edit(view: View, rows: Rows) -> int:
            moved = 0
            for doc, row in list(rows.items()):
                if row.get("person") == old:
                    rows[doc] = {**row, "person": new}
                    moved += 1
            return moved

        return self._change(edit)


def _doc(view: View, sighting_id: str) -> str:
    doc = view.doc_ids.get(sighting_id)
    if doc is None:
        raise UnknownSighting(f"no sighting {sighting_id!r}")
    return doc


def _row(sighting_id: str, new: NewSighting, cluster: str | None) -> dict[str, Any]:
    return {
        "id": sighting_id,
        "seen": round(new.seen, 3),
        "model": new.model,
        "embedding": pack(new.embedding),
        "box": list(new.box),
        "quality": round(float(new.quality), 4),
        "person": new.person,
        "similarity": round(float(new.similarity), 4),
        "source": new.source,
        "route": new.route,
        "client": new.client,
        "cluster": cluster,
    }


def _last_kept(sightings: Iterable[Sighting]) -> dict[tuple[str, str], float]:
    """When each (source, person or cluster) was last kept."""
    last: dict[tuple[str, str], float] = {}
    for s in sightings:
        key = (s.source, s.person or f"cluster {s.cluster}")
        last[key] = max(last.get(key, -1e18), s.seen)
    return last


def _expired(rows: Rows, keep: Retention, now: float) -> list[str]:
    """The documents past `keep.days`, and the oldest beyond `keep.most`."""
    oldest_first = sorted(rows, key=lambda d: (rows[d]["seen"], int(d)))
    limit = now - keep.days * 86400
    gone = [d for d in oldest_first if rows[d]["seen"] < limit]
    left = len(rows) - len(gone)
    if left > keep.most:
        rest = [d for d in oldest_first if rows[d]["seen"] >= limit]
        gone += rest[: left - keep.most]
    return gone
