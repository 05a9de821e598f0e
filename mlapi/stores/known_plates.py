"""The known plates in a TinyDB file (`plates.json` in the data folder): the embedded
`Plates` store.

Writes are atomic and serialised across processes (`mlapi plates add` while a server
runs); readers keep the file's content until it changes (a stat per call), so a running
server names a plate added from the command line on its next request.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from tinydb import Query

from mlapi.errors import PlateTaken, UnknownPlate
from mlapi.stores import KnownPlate, rules
from mlapi.stores.files import FileSnapshot, locked_db
from mlapi.stores.matching import PlateIndex

TABLE = "plates"


class FilePlates:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._snapshot = FileSnapshot(path)
        # The index of one content of the file (FileSnapshot gives a new dict per change).
        self._index: tuple[object, PlateIndex] = (object(), PlateIndex([]))
        self._lock = threading.Lock()

    def add(self, name: str, plate: str = "", pattern: str = "") -> KnownPlate:
        wanted = rules.known_plate(name, plate, pattern)
        with locked_db(self.path) as db:
            table = db.table(TABLE)
            for row in table.all():
                had = _known(row)
                if wanted.plate and had.plate == wanted.plate and had.name != wanted.name:
                    raise PlateTaken(f"plate {had.plate} is already known as {had.name!r}")
                if _same(had, wanted):
                    return had  # already there: no change
            added = KnownPlate(wanted.name, wanted.plate, wanted.pattern, time.time())
            table.insert(
                {"name": added.name, "plate": added.plate, "pattern": added.pattern,
                 "created": added.created}
            )  # fmt: skip
        return added

    def remove(self, name: str) -> int:
        if not any(k.name == name for k in self.known()):  # nothing to rewrite
            raise UnknownPlate(f"no known plate named {name!r}")
        with locked_db(self.path) as db:
            removed = len(db.table(TABLE).remove(Query().name == name))
        if not removed:
            raise UnknownPlate(f"no known plate named {name!r}")
        return removed

    def known(self) -> list[KnownPlate]:
        rows = self._snapshot.read()[0].get(TABLE, {}).values()
        return sorted((_known(r) for r in rows), key=lambda k: (k.name, k.created))

    def match(self, plate: str) -> KnownPlate | None:
        return self._current().match(plate)

    def _current(self) -> PlateIndex:
        content = self._snapshot.read()[0]
        with self._lock:
            made_of, index = self._index
            if made_of is not content:
                rows = content.get(TABLE, {}).values()
                index = PlateIndex(sorted((_known(r) for r in rows), key=lambda k: k.created))
                self._index = (content, index)
            return index


def _same(a: KnownPlate, b: KnownPlate) -> bool:
    return (a.name, a.plate, a.pattern) == (b.name, b.plate, b.pattern)


def _known(row: dict[str, Any]) -> KnownPlate:
    return KnownPlate(row["name"], row.get("plate", ""), row.get("pattern", ""), row["created"])
