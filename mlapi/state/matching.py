"""Cosine matching against a gallery's samples, shared by every `Faces` implementation."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from mlapi.state import Match


class Index:
    """The samples of one face model: names and L2-normalised embeddings, row by row."""

    def __init__(self, rows: Iterable[tuple[str, Sequence[float]]]) -> None:
        chosen = list(rows)
        self.names = [name for name, _ in chosen]
        self.vectors = np.array([vector for _, vector in chosen], np.float32)

    def ranking(self, embedding: np.ndarray) -> list[Match]:
        """Every known person with the cosine of their closest sample, best first."""
        if not self.names:
            return []
        best: dict[str, float] = {}
        scores = self.vectors @ np.asarray(embedding, np.float32)
        for name, score in zip(self.names, scores, strict=True):
            best[name] = max(best.get(name, -1.0), float(score))
        return [Match(n, c) for n, c in sorted(best.items(), key=lambda item: -item[1])]

    def match(self, embedding: np.ndarray) -> Match | None:
        """The closest known person, and how close the next person comes."""
        if not self.names:
            return None
        scores = self.vectors @ np.asarray(embedding, np.float32)
        best = int(np.argmax(scores))
        name = self.names[best]
        others = [float(s) for n, s in zip(self.names, scores, strict=True) if n != name]
        return Match(name, float(scores[best]), max(others, default=None))
