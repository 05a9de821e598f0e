"""Cosine matching against a gallery's samples, shared by every `Faces` implementation;
and who a read plate is, shared by every `Plates` implementation (PlateIndex).

A gallery of 30,000 samples is rebuilt in a server's thread while its event loop goes on
answering; the loop needs the GIL too, so nothing here holds it for long at a stretch:
vectors are converted in chunks, and matching is a few numpy calls, not a loop per sample.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import numpy as np

from mlapi.stores import KnownPlate, Match
from mlapi.text import normalise_plate

CHUNK = 1000  # samples per numpy conversion: about 4 ms each for 128-d lists


class Index:
    """The samples of one face model: names and L2-normalised embeddings, row by row."""

    def __init__(self, names: Sequence[str], vectors: np.ndarray) -> None:
        self.names = list(names)
        self.vectors = np.asarray(vectors, np.float32)  # one row per name
        # Each sample's person as a number; people in the order they first appear.
        numbers: dict[str, int] = {}
        codes = [numbers.setdefault(name, len(numbers)) for name in self.names]
        self.people = list(numbers)
        self.codes = np.array(codes, np.intp)

    @classmethod
    def of(cls, rows: Iterable[tuple[str, Sequence[float]]]) -> Index:
        """From (name, embedding as a list) rows, converted a chunk at a time."""
        names: list[str] = []
        chunks: list[np.ndarray] = []
        pending: list[Sequence[float]] = []
        for name, vector in rows:
            names.append(name)
            pending.append(vector)
            if len(pending) == CHUNK:
                chunks.append(np.array(pending, np.float32))
                pending = []
        if pending:
            chunks.append(np.array(pending, np.float32))
        return cls(names, np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32))

    def ranking(self, embedding: np.ndarray) -> list[Match]:
        """Every known person with the cosine of their closest sample, best first."""
        if not self.names:
            return []
        scores = self.vectors @ np.asarray(embedding, np.float32)
        best = np.full(len(self.people), -1.0)
        np.maximum.at(best, self.codes, scores)
        order = np.argsort(-best, kind="stable")  # ties: in the order people first appear
        return [Match(self.people[i], float(best[i])) for i in order]

    def match(self, embedding: np.ndarray) -> Match | None:
        """The closest known person, and how close the next person comes."""
        if not self.names:
            return None
        scores = self.vectors @ np.asarray(embedding, np.float32)
        best = int(np.argmax(scores))
        others = scores[self.codes != self.codes[best]]
        runner_up = float(others.max()) if others.size else None
        return Match(self.names[best], float(scores[best]), runner_up)


def within_one_edit(a: str, b: str) -> bool:
    """Whether `a` becomes `b` by at most one edit: a character replaced, added or dropped
    (a Levenshtein distance of 1 or 0)."""
    if len(a) > len(b):
        a, b = b, a
    if len(b) - len(a) > 1:
        return False
    start = 0
    while start < len(a) and a[start] == b[start]:
        start += 1
    if len(a) == len(b):
        return a[start + 1 :] == b[start + 1 :]
    return a[start:] == b[start + 1 :]


class PlateIndex:
    """Who a read plate is, from the known plates (compared on upper-case letters and
    digits): the known plate it reads exactly, else the one it reads within one edit (a
    character misread, added or dropped), else a pattern that matches it in full. When two
    names are equally close, neither is given (as recognition names no one of two people
    who look alike)."""

    def __init__(self, known: Iterable[KnownPlate]) -> None:
        known = list(known)
        self.plates = [k for k in known if k.plate]
        self.patterns = [(re.compile(k.pattern), k) for k in known if k.pattern]

    def match(self, reading: str) -> KnownPlate | None:
        plate = normalise_plate(reading)
        if not plate:
            return None
        exact = [k for k in self.plates if k.plate == plate]
        near = exact or [k for k in self.plates if within_one_edit(k.plate, plate)]
        found = near or [k for pattern, k in self.patterns if pattern.fullmatch(plate)]
        if len({k.name for k in found}) != 1:
            return None  # nobody, or two names as close
        return found[0]
