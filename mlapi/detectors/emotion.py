"""`emotion`: seven facial expressions for each face (human-models `emotion`)."""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from mlapi import attributes
from mlapi.detectors.base import Detector, NoOptions
from mlapi.detectors.faceutil import batch
from mlapi.images import Image
from mlapi.result import Detection

INPUT = 64
# The network's output order (FER-2013), named as face-api.js / HomeGallery name them.
EXPRESSIONS = ("angry", "disgusted", "fearful", "happy", "sad", "surprised", "neutral")


class Emotion(Detector):
    name = "emotion"
    task = "attributes"
    description = "probabilities of 7 expressions for each face"
    needs = ("faces",)
    refines = "faces"
    models = ("emotion",)
    min_side = None

    def load(self) -> None:
        self.session, self.input_name = self.open_session()

    def detect(
        self, image: Image, options: NoOptions, upstream: Mapping[str, list[Detection]]
    ) -> list[Detection]:
        faces = upstream["faces"]
        if not faces:
            return []
        crops = batch(image, faces, INPUT)
        grey = np.stack([cv2.cvtColor(c, cv2.COLOR_RGB2GRAY) for c in crops]).astype(np.float32)
        tensor = ((grey / 255.0 - 0.5) * 2.0)[..., None]
        probs = self.session.run(None, {self.input_name: tensor})[0]
        found = []
        for face, p in zip(faces, probs, strict=True):
            p = p / max(float(p.sum()), 1e-9)
            attrs = attributes.expression(
                {name: float(v) for name, v in zip(EXPRESSIONS, p, strict=True)}
            )
            found.append(
                Detection(face.label, face.confidence, face.box, self.name, face.keypoints, attrs)
            )
        return found
