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
from mlapi.errors import UnknownPerson
from mlapi.stores import Match, Sample, rules
from mlapi.stores.files import locked_db, write_private
from mlapi.stores.matching import Index

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
            raise UnknownPerson(f"no {what} in the gallery")
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
            raise UnknownPerson(f"no person {old!r} in the gallery")
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
            raise UnknownPerson(f"no sample {sample_id!r} in the gallery")
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
                data = self.path.read_bytes()  # the read itself releases the GIL
                content = loads_in_pieces(data or b"{}", each=_kept)
                self._data = content if isinstance(content, dict) else {}
                self._stamp = stamp
                self._generation += 1
            return self._data, self._generation


_SPACE = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


def loads_in_pieces(
    data: bytes, depth: int = 2, each: Callable[[Any], Any] = lambda value: value
) -> Any:
    """json.loads(data), but the members of objects `depth` levels down (a TinyDB file's
    documents) are parsed one at a time, each then passed through `each`, and the text is
    decoded a piece at a time: no call holds the GIL for long (one json.loads of 50 MB
    holds it for a second, and even joining its text takes 30 ms)."""
    return _Pieces(data).document(depth, each)


class _Pieces:
    """UTF-8 `data` read as JSON through a window of its text that holds at least AHEAD
    characters past the reading position (or the rest of the text)."""

    PIECE = 1 << 20  # bytes decoded at a time
    AHEAD = 1 << 18  # characters kept ahead: more than a sample takes

    def __init__(self, data: bytes) -> None:
        self.data, self.read = memoryview(data), 0
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text, self.at = "", 0

    def document(self, depth: int, each: Callable[[Any], Any]) -> Any:
        self.space()
        found = self.value(depth, each)
        self.space()
        if self.at != len(self.text):
            raise json.JSONDecodeError("Extra data", self.text, self.at)
        return found

    def value(self, depth: int, each: Callable[[Any], Any]) -> Any:
        """The value at the reading position (no space before it)."""
        if depth == 0 or not self.starts("{"):
            found = self.decoded()
            return each(found) if depth == 0 else found
        members: dict[str, Any] = {}
        self.at += 1
        self.space()
        if self.starts("}"):
            self.at += 1
            return members
        while True:
            if not self.starts('"'):
                raise json.JSONDecodeError("Expecting property name", self.text, self.at)
            key = self.decoded()
            self.space()
            if not self.starts(":"):
                raise json.JSONDecodeError("Expecting ':' delimiter", self.text, self.at)
            self.at += 1
            self.space()
            members[key] = self.value(depth - 1, each)
            self.space()
            if self.starts("}"):
                self.at += 1
                return members
            if not self.starts(","):
                raise json.JSONDecodeError("Expecting ',' delimiter", self.text, self.at)
            self.at += 1
            self.space()

    def decoded(self) -> Any:
        """One JSON value, parsed by the json module's scanner."""
        while True:
            self.fill()
            try:
                found, end = _DECODER.raw_decode(self.text, self.at)
            except json.JSONDecodeError:
                if self.more():
                    continue  # longer than the window
                raise
            if len(self.text) - end < 8 and self.more():
                continue  # a number cut at the window's end ("2.5e" of "2.5e-07") reads short
            self.at = end
            return found

    def starts(self, mark: str) -> bool:
        self.fill()
        return self.text.startswith(mark, self.at)

    def space(self) -> None:
        """Past any white space."""
        while True:
            self.fill()
            space = _SPACE.match(self.text, self.at)
            self.at = space.end() if space else self.at
            if self.at < len(self.text) or not self.more():
                return

    def fill(self) -> None:
        while len(self.text) - self.at < self.AHEAD and self.more():
            pass

    def more(self) -> bool:
        """The next piece of text into the window (what is read is dropped); False at the
        end."""
        if self.read >= len(self.data):
            return False
        piece = self.data[self.read : self.read + self.PIECE]
        self.read += len(piece)
        tail = self.decoder.decode(piece, final=self.read >= len(self.data))
        self.text, self.at = self.text[self.at :] + tail, 0
        return True


def _kept(document: Any) -> Any:
    """A sample as kept in memory: its embedding an array, not a list of 128 floats, in a
    new dict. The garbage collector walks every list and every dict that ever held one
    (a full collection of 30,000 such samples holds the GIL for 100 ms), but not an array
    of numbers, nor a dict made from the start of values like it."""
    if not isinstance(document, dict) or not isinstance(document.get("embedding"), list):
        return document
    return {
        key: np.array(value, np.float64) if key == "embedding" else value  # as parsed
        for key, value in document.items()
    }


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
