"""The gallery of known people in a TinyDB file: the embedded `Faces` store.

Writes are atomic and serialised across processes (`mlapi faces add` while a server runs);
readers keep a snapshot that is refreshed when the file changes, so a running server sees
new people on its next request without a restart. Each sample's face thumbnail (a small
JPEG for the console) is a file `faces/ID.jpg` beside the gallery file.
"""

from __future__ import annotations

import codecs
import json
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from tinydb import Query
from tinydb.queries import QueryInstance

from mlapi import text
from mlapi.errors import GalleryError
from mlapi.state import Match, Sample, rules
from mlapi.state.files import locked_db, write_private
from mlapi.state.matching import Index

SAMPLE_ID = re.compile(r"[0-9a-f]{1,64}")  # what secrets.token_hex makes: safe as a file name


class Gallery:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._snapshot = GallerySnapshot(self.path)
        # Made from the file's content of a generation (see GallerySnapshot), kept until it
        # changes: each model's vectors, and every sample for listings.
        self._index: tuple[int, dict[str, Index]] = (-1, {})
        self._lock = threading.Lock()
        self._listed: tuple[int, list[Sample]] = (-1, [])
        self._listing = threading.Lock()
        self.thumbnails = path.parent / "faces"

    # -- writing -------------------------------------------------------------------------
    def add(
        self,
        name: str,
        embedding: np.ndarray,
        model: str,
        source: str = "",
        thumbnail: bytes | None = None,
    ) -> str:
        """Append a sample for `name`; returns its id."""
        name = rules.person_name(name)
        sample_id = secrets.token_hex(6)
        if thumbnail:  # first, so a listed sample never lacks its picture
            self.path.parent.mkdir(parents=True, exist_ok=True)  # as the gallery's writes do
            self.thumbnails.mkdir(mode=0o700, exist_ok=True)
            write_private(self._thumbnail(sample_id), thumbnail)
        with locked_db(self.path) as db:
            db.table("samples").insert(
                {
                    "id": sample_id,
                    "name": name,
                    "model": model,
                    "created": time.time(),
                    "source": source,
                    "embedding": rules.stored_embedding(embedding),
                }
            )
        return sample_id

    def remove(self, name: str, sample_id: str | None = None) -> int:
        """Remove a person (or one of their samples); the number of samples removed;
        `name` as listed (see _listed_as)."""
        query = _named(name)
        if sample_id:
            query = query & (Query().id == sample_id)
        removed = 0
        empty = not sample_id and name in {
            r["name"] for r in self._tables().get("people", {}).values()
        }
        # Nothing to remove means nothing to rewrite (the file may hold 30,000 samples).
        if empty or any(_listed_as(r["name"], name) for r in self._rows()):
            with locked_db(self.path) as db:
                gone = [r["id"] for r in db.table("samples").search(query)]
                removed = len(db.table("samples").remove(query))
                if not sample_id:
                    db.table("people").remove(Query().name == name)
            self._forget_thumbnails(gone)
        if not removed and not empty:
            what = f"sample {sample_id} of {name!r}" if sample_id else f"person {name!r}"
            raise GalleryError(f"no {what} in the gallery")
        return removed

    def create(self, name: str) -> bool:
        name = rules.person_name(name)
        if name in self.names():
            return False
        with locked_db(self.path) as db:
            db.table("people").insert({"name": name})
        return True

    def rename(self, old: str, new: str) -> int:
        new = rules.person_name(new)
        if old not in self.names():
            raise GalleryError(f"no person {old!r} in the gallery")
        with locked_db(self.path) as db:
            moved = len(db.table("samples").update({"name": new}, _named(old)))
            db.table("people").remove(Query().name == old)
            if not db.table("people").search(Query().name == new):
                db.table("people").insert({"name": new})
        return moved

    def sample(self, sample_id: str) -> tuple[Sample, list[float]] | None:
        for r in self._rows():
            if r["id"] == sample_id:
                return _sample(r), [float(v) for v in r["embedding"]]
        return None

    def remove_sample(self, sample_id: str) -> Sample:
        found = self.sample(sample_id)
        if found is None:
            raise GalleryError(f"no sample {sample_id!r} in the gallery")
        with locked_db(self.path) as db:
            db.table("samples").remove(Query().id == sample_id)
        self._forget_thumbnails([sample_id])
        return found[0]

    def clear(self) -> int:
        count = len(self.names())
        with locked_db(self.path) as db:
            gone = [r["id"] for r in db.table("samples").all()]
            db.drop_table("samples")
            db.drop_table("people")
        self._forget_thumbnails(gone)
        return count

    def thumbnail(self, sample_id: str) -> bytes | None:
        if not SAMPLE_ID.fullmatch(sample_id):
            return None
        try:
            return self._thumbnail(sample_id).read_bytes()
        except FileNotFoundError:
            return None

    def _thumbnail(self, sample_id: str) -> Path:
        return self.thumbnails / f"{sample_id}.jpg"

    def _forget_thumbnails(self, sample_ids: list[str]) -> None:
        for sample_id in sample_ids:
            if SAMPLE_ID.fullmatch(sample_id):
                self._thumbnail(sample_id).unlink(missing_ok=True)

    # -- reading -------------------------------------------------------------------------
    def _tables(self) -> dict[str, Any]:
        return self._snapshot.read()[0]

    def _rows(self) -> list[dict[str, Any]]:
        return list(self._tables().get("samples", {}).values())

    def samples(self) -> list[Sample]:
        tables, generation = self._snapshot.read()
        with self._listing:
            kept = self._listed
            if kept[0] != generation:
                kept = generation, [_sample(r) for r in tables.get("samples", {}).values()]
                if generation > self._listed[0]:  # not when another reader saw newer content
                    self._listed = kept
            return list(kept[1])

    def names(self) -> list[str]:
        tables = self._tables()
        people = {r["name"] for r in tables.get("people", {}).values()}
        return sorted(people | {text.shown(r["name"]) for r in tables.get("samples", {}).values()})

    def _matrix(self, model: str) -> Index:
        tables, generation = self._snapshot.read()
        with self._lock:
            made, indexes = self._index
            if generation != made:
                indexes = {}  # vectors are rebuilt from the new content on demand
                if generation > made:  # not when another reader saw newer content
                    self._index = generation, indexes
            if model not in indexes:
                chosen = [r for r in tables.get("samples", {}).values() if r["model"] == model]
                indexes[model] = Index.of((text.shown(r["name"]), r["embedding"]) for r in chosen)
            return indexes[model]

    def ranking(self, embedding: np.ndarray, model: str) -> list[Match]:
        """Every known person with the cosine of their closest sample, best first."""
        return self._matrix(model).ranking(embedding)

    def match(self, embedding: np.ndarray, model: str) -> Match | None:
        """The closest known person by cosine similarity (embeddings are L2-normalised), and
        how close the next person comes."""
        return self._matrix(model).match(embedding)


class GallerySnapshot:
    """The gallery file's content, re-read only when the file changed (a stat per call),
    like files.FileSnapshot; but a file of 30,000 samples (50 MB) is parsed a sample at a
    time, since one json.loads of it holds the GIL, and so the server's event loop, for a
    second. Writers replace the file atomically, so reading without the lock is safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        self._data: dict[str, Any] = {}
        self._generation = 0
        self._lock = threading.Lock()

    def read(self) -> tuple[dict[str, Any], int]:
        """(content, its generation: a number that grows with each change seen)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            with self._lock:
                if self._stamp is not None:
                    self._stamp, self._data = None, {}
                    self._generation += 1
                return self._data, self._generation
        stamp = (st.st_mtime_ns, st.st_ino, st.st_size)
        with self._lock:
            if stamp != self._stamp:
                content = loads_in_pieces(_text(self.path) or "{}", each=_kept)
                self._data = content if isinstance(content, dict) else {}
                self._stamp = stamp
                self._generation += 1
            return self._data, self._generation


def _text(path: Path, piece: int = 1 << 22) -> str:
    """The file as text, decoded 4 MB at a time (the whole in one call: 30 ms of GIL)."""
    data = memoryview(path.read_bytes())
    decoder = codecs.getincrementaldecoder("utf-8")()
    parts = [decoder.decode(data[at : at + piece]) for at in range(0, len(data), piece)]
    return "".join([*parts, decoder.decode(b"", final=True)])


_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def loads_in_pieces(
    document: str, depth: int = 2, each: Callable[[Any], Any] = lambda value: value
) -> Any:
    """json.loads(document), but the members of objects `depth` levels down (a TinyDB
    file's documents) are parsed one at a time, each then passed through `each`: the GIL
    can pass between them."""
    value, end = _value(document, _skip(document, 0), depth, each)
    if _skip(document, end) != len(document):
        raise json.JSONDecodeError("Extra data", document, end)
    return value


def _value(document: str, at: int, depth: int, each: Callable[[Any], Any]) -> tuple[Any, int]:
    """The JSON value starting at `at` (no space before it), and where it ends."""
    if depth == 0 or not document.startswith("{", at):
        value, end = _DECODER.raw_decode(document, at)
        return (each(value) if depth == 0 else value), end
    found: dict[str, Any] = {}
    at = _skip(document, at + 1)
    if document.startswith("}", at):
        return found, at + 1
    while True:
        if not document.startswith('"', at):
            raise json.JSONDecodeError("Expecting property name in double quotes", document, at)
        key, at = _DECODER.raw_decode(document, at)
        at = _skip(document, at)
        if not document.startswith(":", at):
            raise json.JSONDecodeError("Expecting ':' delimiter", document, at)
        found[key], at = _value(document, _skip(document, at + 1), depth - 1, each)
        at = _skip(document, at)
        if document.startswith("}", at):
            return found, at + 1
        if not document.startswith(",", at):
            raise json.JSONDecodeError("Expecting ',' delimiter", document, at)
        at = _skip(document, at + 1)


def _kept(document: Any) -> Any:
    """A sample as kept in memory: its embedding an array, not a list of 128 floats. The
    garbage collector walks every list (holding the GIL: 100 ms for 30,000 samples), but
    not an array of numbers."""
    if isinstance(document, dict) and isinstance(document.get("embedding"), list):
        document["embedding"] = np.array(document["embedding"], np.float64)  # as parsed
    return document


def _skip(document: str, at: int) -> int:
    """Past any white space at `at`."""
    space = _SPACE.match(document, at)
    return space.end() if space else at


def _sample(row: dict[str, Any]) -> Sample:
    shown = text.shown(row["name"])
    return Sample(row["id"], shown, row["model"], row["created"], row.get("source", ""))


def _listed_as(stored: str, name: str) -> bool:
    """A stored name is `name` as listed: a name an older version stored with a lone
    surrogate is listed, and matched, by its escaped form (see text.shown)."""
    return name in (stored, text.shown(stored))


def _named(name: str) -> QueryInstance:
    """The samples of `name` as listed (see _listed_as)."""
    query: QueryInstance = Query().name.test(_listed_as, name)
    return query
