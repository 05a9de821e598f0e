"""`genderage`: gender and age for each face (FaceRes from human-models)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from mlapi.detectors.base import Detector, NoOptions
from mlapi.detectors.faceutil import batch
from mlapi.images import Image
from mlapi.result import Detection

INPUT = 224
GENDER, DESCRIPTOR, AGE = "gender_pred/Sigmoid:0", "global_pooling/Mean", "age_pred/Softmax:0"


class GenderAge(Detector):
    name = "genderage"
    task = "attributes"
    description = "gender (male/female) and age in years for each face (FaceRes)"
    needs = ("faces",)
    refines = "faces"
    models = ("faceres",)
    min_side = None  # face crops need the full-resolution image

    def load(self) -> None:
        self.session = self.context.onnx_session(self.models[0])
        self.input_name = self.session.get_inputs()[0].name

    def run(self, image: Image, faces: list[Detection]) -> dict[str, np.ndarray]:
        """Raw outputs for all faces in one call: gender sigmoid, age softmax, descriptor."""
        crops = batch(image, faces, INPUT).astype(np.float32)
        outs = self.session.run([GENDER, AGE, DESCRIPTOR], {self.input_name: crops})
        return dict(zip(("gender", "age", "descriptor"), outs, strict=True))

    def detect(
        self, image: Image, options: NoOptions, upstream: Mapping[str, list[Detection]]
    ) -> list[Detection]:
        faces = upstream["faces"]
        if not faces:
            return []
        outs = self.run(image, faces)
        ages = outs["age"] @ np.arange(outs["age"].shape[1], dtype=np.float32)
        found = []
        for face, male, age in zip(faces, outs["gender"][:, 0], ages, strict=True):
            label = "male" if male > 0.5 else "female"
            confidence = float(male if male > 0.5 else 1 - male)
            attrs = {"gender": {"label": label, "confidence": confidence}, "age": float(age)}
            found.append(
                Detection(face.label, face.confidence, face.box, self.name, face.keypoints, attrs)
            )
        return found
