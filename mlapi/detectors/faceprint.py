"""`faceprint`: a face embedding for recognition, L2-normalised.

`dlib` (default): dlib's 128-d ResNet on a 5-point-aligned chip; it separated the same
person from others far better on the sample photos (see docs/models.md). The network
runs in onnxruntime (written from dlib's file at pull time: mlapi/store/dlibnet.py), the
same vectors as dlib's own code gives to 1e-6, about 15 times faster.
`faceres`: the 1024-d descriptor FaceRes computes anyway; several times faster, weaker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from mlapi import attributes
from mlapi.detectors.base import Detector, Options
from mlapi.detectors.faceres import DESCRIPTOR, run_faceres
from mlapi.images import Image
from mlapi.result import Detection
from mlapi.similarity import normalise


@dataclass(frozen=True)
class FaceprintOptions(Options):
    model: str = field(default="dlib", metadata={"choices": ("dlib", "faceres")})
    # Unit length (cosine = dot product); false: the descriptor as the network gives it
    # (dlib's scale, where a distance under about 0.55 means the same person).
    normalise: bool = True


class Faceprint(Detector):
    name = "faceprint"
    task = "embedding"
    description = "a face embedding for each face (dlib 128-d, or faceres 1024-d)"
    needs = ("faces",)
    refines = "faces"
    models = ("dlib-face",)
    min_side = None
    Options = FaceprintOptions

    def load(self) -> None:
        import dlib

        folder = self.context.model_path("dlib-face")
        self.aligner = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
        self.encoder = self.context.onnx_session("dlib-face")

    def _dlib(self, image: Image, faces: list[Detection]) -> np.ndarray:
        import dlib

        s = image.scale
        chips = []
        for face in faces:
            rect = dlib.rectangle(*(round(v * s) for v in face.box))
            shape = self.aligner(image.pixels, rect)
            chips.append(dlib.get_face_chip(image.pixels, shape, size=150, padding=0.25))
        batch = np.stack(chips).astype(np.float32)
        return np.asarray(self.encoder.run(None, {"chips": batch})[0])

    def _faceres_vectors(self, image: Image, faces: list[Detection]) -> np.ndarray:
        session = self.context.onnx_session("faceres")  # shared with genderage, made once
        return run_faceres(session, image, faces, [DESCRIPTOR])[0]

    def vectors(
        self, image: Image, faces: list[Detection], model: str = "dlib", unit: bool = True
    ) -> np.ndarray:
        raw = self._dlib(image, faces) if model == "dlib" else self._faceres_vectors(image, faces)
        return normalise(raw) if unit else raw

    def detect(
        self, image: Image, options: FaceprintOptions, upstream: Mapping[str, list[Detection]]
    ) -> list[Detection]:
        faces = upstream["faces"]
        if not faces:
            return []
        vectors = self.vectors(image, faces, options.model, options.normalise)
        return [
            Detection(
                f.label,
                f.confidence,
                f.box,
                self.name,
                f.keypoints,
                attributes.faceprinted(options.model),
                tuple(float(x) for x in v),
            )
            for f, v in zip(faces, vectors, strict=True)
        ]
