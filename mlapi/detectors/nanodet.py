"""`objects`: NanoDet-Plus-m 416 (80 COCO classes) on onnxruntime."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mlapi.detectors.base import Options, StagedDetector
from mlapi.detectors.coco import COCO_LABELS
from mlapi.detectors.common import letterbox, nms, to_original
from mlapi.errors import OptionError
from mlapi.images import Image
from mlapi.result import Detection

INPUT = 416
STRIDES = (8, 16, 32)
BINS = 11  # reg_max + 1 distribution bins per box side
MEAN = np.array([103.53, 116.28, 123.675], np.float32)  # BGR
STD = np.array([57.375, 57.12, 58.395], np.float32)
MEAN_RGB, INV_STD_RGB = MEAN[::-1].copy(), (1.0 / STD[::-1]).astype(np.float32)


@dataclass(frozen=True)
class NanoDetOptions(Options):
    confidence: float = field(default=0.35, metadata={"min": 0.0, "max": 1.0})
    iou: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    labels: tuple[str, ...] = ()  # allow-list; empty means every class
    max_count: int = field(default=100, metadata={"min": 1, "max": 1000})

    def __post_init__(self) -> None:
        unknown = sorted(set(self.labels) - set(COCO_LABELS))
        if unknown:
            raise OptionError(f"objects: labels not in COCO: {', '.join(unknown)}")


def decode_outputs(
    cls_by_stride: Mapping[int, np.ndarray],
    reg_by_stride: Mapping[int, np.ndarray],
    confidence: float,
    size: int = INPUT,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NanoDet head → (boxes x1y1x2y2 in input pixels, scores, class ids), before NMS.

    Class scores are already sigmoided; each box side is a softmax over BINS distances
    whose expectation, times the stride, is the distance from the anchor centre.
    """
    all_boxes, all_scores, all_classes = [], [], []
    for stride in STRIDES:
        grid = size // stride
        scores = cls_by_stride[stride].reshape(grid * grid, -1)
        best = scores.argmax(1)
        best_score = scores[np.arange(len(best)), best]
        idx = np.nonzero(best_score >= confidence)[0]
        if idx.size == 0:
            continue
        reg = reg_by_stride[stride].reshape(grid * grid, 4, BINS)[idx]
        reg = np.exp(reg - reg.max(-1, keepdims=True))
        dist = (reg / reg.sum(-1, keepdims=True)) @ np.arange(BINS, dtype=np.float32) * stride
        cx = (idx % grid + 0.5) * stride
        cy = (idx // grid + 0.5) * stride
        boxes = np.column_stack(
            [cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]]
        )
        all_boxes.append(boxes)
        all_scores.append(best_score[idx])
        all_classes.append(best[idx])
    if not all_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_classes)


def to_tensor(image: Image) -> tuple[np.ndarray, float]:
    """Letterboxed, normalised 1×3×416×416 BGR input and the factor back to image pixels."""
    canvas, factor = letterbox(image.pixels, INPUT, pad=(124, 116, 104))
    x = canvas.astype(np.float32)
    x -= MEAN_RGB  # in place: a third faster than building BGR copies
    x *= INV_STD_RGB
    return np.stack([x[:, :, 2], x[:, :, 1], x[:, :, 0]])[None], factor


def calibration_tensors(store: Any) -> list[np.ndarray]:
    """Inputs for int8 calibration: the sample photos and their mirror images."""
    from mlapi import samples
    from mlapi.images import decode

    tensors = []
    for photo in sorted(samples.fetch(store).glob("*.jpg")):
        rgb = decode(photo.read_bytes()).pixels
        for pixels in (rgb, np.ascontiguousarray(rgb[:, ::-1])):
            tensors.append(to_tensor(Image.from_array(pixels))[0])
    return tensors


class NanoDet(StagedDetector):
    name = "objects"
    task = "objects"
    description = "80 COCO object classes (NanoDet-Plus-m 416, int8)"
    models = ("nanodet-int8",)
    min_side = INPUT
    Options = NanoDetOptions

    def load(self) -> None:
        self.session, self.input_name = self.open_session()
        # Outputs are (cells, 80) class scores and (cells, 44) box bins per stride.
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.shapes = [(o.shape[1], o.shape[2]) for o in self.session.get_outputs()]

    def preprocess(self, image: Image) -> tuple[np.ndarray, float]:
        return to_tensor(image)

    def infer(self, tensor: np.ndarray) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        results = self.session.run(self.outputs, {self.input_name: tensor})
        cls_by_stride, reg_by_stride = {}, {}
        for (cells, width), out in zip(self.shapes, results, strict=True):
            stride = INPUT // round(cells**0.5)
            (cls_by_stride if width == len(COCO_LABELS) else reg_by_stride)[stride] = out[0]
        return cls_by_stride, reg_by_stride

    def postprocess(
        self,
        outputs: tuple[dict[int, np.ndarray], dict[int, np.ndarray]],
        factor: float,
        image: Image,
        options: NanoDetOptions,
    ) -> list[Detection]:
        boxes, scores, classes = decode_outputs(*outputs, options.confidence)
        if options.labels:
            wanted = np.isin(classes, [COCO_LABELS.index(lb) for lb in options.labels])
            boxes, scores, classes = boxes[wanted], scores[wanted], classes[wanted]
        keep = nms(boxes, scores, classes, options.iou)[: options.max_count]
        return [
            Detection(
                COCO_LABELS[classes[i]],
                float(scores[i]),
                to_original(boxes[i], factor, image),
                self.name,
            )
            for i in keep
        ]


class NanoDetFloat(NanoDet):
    """The same network in float32: slower, for when int8 rounding matters."""

    name = "objects-fp32"
    description = "80 COCO object classes (NanoDet-Plus-m 416, float32)"
    models = ("nanodet",)
