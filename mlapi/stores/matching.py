"""Cosine matching against a gallery's samples, shared by every `Faces` implementation.

A gallery of 30,000 samples is rebuilt in a server's thread while its event loop goes on
answering; the loop needs the GIL too, so nothing here holds it for long at a stretch:
vectors are converted in chunks, and matching is a few numpy calls, not a loop per sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from mlapi.stores import Match

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
