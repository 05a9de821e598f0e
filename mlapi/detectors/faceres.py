"""FaceRes (human-models) on eye-aligned 224 px crops: one network, two users. genderage
reads its gender and age heads, faceprint its descriptor, from the same session."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlapi.detectors.faceutil import batch
from mlapi.images import Image
from mlapi.result import Detection

INPUT = 224
GENDER, DESCRIPTOR, AGE = "gender_pred/Sigmoid:0", "global_pooling/Mean", "age_pred/Softmax:0"


def run_faceres(
    session: Any, image: Image, faces: list[Detection], outputs: list[str]
) -> list[np.ndarray]:
    """FaceRes outputs for all faces of an image in one call."""
    crops = batch(image, faces, INPUT).astype(np.float32)
    found: list[np.ndarray] = session.run(outputs, {session.get_inputs()[0].name: crops})
    return found
