"""Faceprint similarity on one calibrated 0..1 scale, shared by recognition and every
dialect that compares faces (DeepStack match, CompreFace verify)."""

from __future__ import annotations

import numpy as np

# The 0..1 similarity every client sees, as a piecewise-linear map of the cosine of two
# normalised faceprints. Calibrated with bench/accuracy.py on the labelled public photos
# (dlib: 10 same-person pairs at cosine 0.90-1.00, 126 different-person pairs at 0.83
# median, 0.895 at the 99th percentile): different people land under 0.45, the threshold
# DeepStack clients send, and the same person in ordinary photos above 0.67, DeepStack's
# default. faceres is weaker (same person about 0.79, others 0.43-0.57) and less calibrated.
SCALE = {
    "dlib": ((0.80, 0.90, 0.92, 1.0), (0.0, 0.40, 0.67, 1.0)),
    "faceres": ((0.50, 0.65, 0.70, 1.0), (0.0, 0.40, 0.67, 1.0)),
}
MATCH_AT = 0.67  # DeepStack's default face-recognition threshold, so its clients just work
# A name also needs this lead over the next most similar person: a stranger often
# resembles several people about equally.
MARGIN = 0.10


def similarity(cosine: float, model: str) -> float:
    """The calibrated 0..1 similarity of two faceprints with this cosine."""
    cosines, scores = SCALE[model]
    return float(np.interp(cosine, cosines, scores))


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    unit: np.ndarray = vectors / np.maximum(norms, 1e-12)
    return unit
