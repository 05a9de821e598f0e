"""Which cluster an unknown face joins: the one whose centroid (the normalised mean of its
faceprints) is most similar, on the gallery's calibrated scale, when at least `join_at`.

One pass per face against the clusters' centroids (a matrix product), never over every
sighting: grouping stays incremental as faces arrive. scikit-learn was weighed and not
used: its incremental clusterer (Birch.partial_fit) thresholds a Euclidean radius of
sub-clusters and re-runs a global step, where this needs the gallery's own similarity (so
a cluster is "the same person" exactly as recognition would say) and stable cluster ids
that users name; DBSCAN and HDBSCAN re-cluster everything on each call.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from mlapi.similarity import normalise, similarity


class Centroids:
    """The clusters of one faceprint model: each one's id, embedding sum and count, and
    their normalised sums as rows of one matrix (grown by doubling, so a batch that starts
    many clusters never re-stacks them all)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.ids: list[str] = []
        self.sums: list[np.ndarray] = []
        self.counts: list[int] = []
        self._at: dict[str, int] = {}
        self._matrix = np.zeros((0, 0), np.float32)  # normalised sums; rows beyond ids unused

    @classmethod
    def of(cls, model: str, members: Iterable[tuple[str, np.ndarray]]) -> Centroids:
        """From (cluster id, normalised embedding) pairs."""
        sums: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        for cluster, embedding in members:
            sums[cluster] = sums.get(cluster, 0.0) + np.asarray(embedding, np.float64)
            counts[cluster] = counts.get(cluster, 0) + 1
        found = cls(model)
        for cluster, total in sums.items():
            found.add(cluster, total, counts[cluster])
        return found

    @classmethod
    def of_sums(
        cls, model: str, clusters: list[str], sums: np.ndarray, counts: list[int]
    ) -> Centroids:
        """From each cluster's embedding sum (one row each) and count."""
        found = cls(model)
        found.ids = list(clusters)
        found.sums = list(np.asarray(sums, np.float64))
        found.counts = list(counts)
        found._at = {c: at for at, c in enumerate(clusters)}
        found._matrix = normalise(np.asarray(sums, np.float64)).astype(np.float32)
        return found

    def add(self, cluster: str, embedding: np.ndarray, count: int = 1) -> None:
        """A cluster (its embedding sum and count)."""
        total = np.asarray(embedding, np.float64)
        row = len(self.ids)
        if row == len(self._matrix):
            grown = np.zeros((max(2 * row, 64), total.shape[-1]), np.float32)
            if row:
                grown[:row] = self._matrix[:row]
            self._matrix = grown
        self._matrix[row] = normalise(total)
        self._at[cluster] = row
        self.ids.append(cluster)
        self.sums.append(total)
        self.counts.append(count)

    def nearest(self, embedding: np.ndarray) -> tuple[str, float] | None:
        """The most similar cluster and its calibrated similarity, or None if there is none."""
        if not self.ids:
            return None
        scores = self._matrix[: len(self.ids)] @ np.asarray(embedding, np.float32)
        best = int(np.argmax(scores))
        return self.ids[best], similarity(float(scores[best]), self.model)

    def join(self, embedding: np.ndarray, join_at: float) -> str | None:
        """The cluster `embedding` joins (counted in it), or None: it starts its own."""
        near = self.nearest(embedding)
        if near is None or near[1] < join_at:
            return None
        at = self._at[near[0]]
        self.sums[at] = self.sums[at] + embedding
        self.counts[at] += 1
        self._matrix[at] = normalise(self.sums[at])  # one row changed: the rest stay
        return near[0]


def centroid(embeddings: np.ndarray) -> np.ndarray:
    """The normalised mean of normalised embeddings (one per row)."""
    mean = np.asarray(embeddings, np.float64).sum(axis=0)
    return normalise(mean).astype(np.float32)
