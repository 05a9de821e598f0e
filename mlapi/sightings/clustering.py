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
    """The clusters of one faceprint model: each one's id, embedding sum and count."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.ids: list[str] = []
        self.sums: list[np.ndarray] = []
        self.counts: list[int] = []
        self._matrix: np.ndarray | None = None  # normalised sums, made when asked

    @classmethod
    def of(cls, model: str, members: Iterable[tuple[str, np.ndarray]]) -> Centroids:
        """From (cluster id, normalised embedding) pairs."""
        found = cls(model)
        at: dict[str, int] = {}
        for cluster, embedding in members:
            if cluster in at:
                found.sums[at[cluster]] = found.sums[at[cluster]] + embedding
                found.counts[at[cluster]] += 1
            else:
                at[cluster] = len(found.ids)
                found.add(cluster, embedding)
        return found

    def add(self, cluster: str, embedding: np.ndarray, count: int = 1) -> None:
        """A cluster (its embedding sum and count)."""
        self.ids.append(cluster)
        self.sums.append(np.asarray(embedding, np.float64))
        self.counts.append(count)
        self._matrix = None

    def nearest(self, embedding: np.ndarray) -> tuple[str, float] | None:
        """The most similar cluster and its calibrated similarity, or None if there is none."""
        if not self.ids:
            return None
        if self._matrix is None:
            self._matrix = normalise(np.stack(self.sums)).astype(np.float32)
        scores = self._matrix @ np.asarray(embedding, np.float32)
        best = int(np.argmax(scores))
        return self.ids[best], similarity(float(scores[best]), self.model)

    def join(self, embedding: np.ndarray, join_at: float) -> str | None:
        """The cluster `embedding` joins (counted in it), or None: it starts its own."""
        near = self.nearest(embedding)
        if near is None or near[1] < join_at:
            return None
        at = self.ids.index(near[0])
        self.sums[at] = self.sums[at] + embedding
        self.counts[at] += 1
        if self._matrix is not None:  # one row changed: the rest stay as they are
            self._matrix[at] = normalise(self.sums[at]).astype(np.float32)
        return near[0]


def centroid(embeddings: np.ndarray) -> np.ndarray:
    """The normalised mean of normalised embeddings (one per row)."""
    mean = np.asarray(embeddings, np.float64).sum(axis=0)
    return normalise(mean).astype(np.float32)
