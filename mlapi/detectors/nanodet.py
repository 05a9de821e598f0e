"""`objects`: NanoDet-Plus-m (80 COCO classes) on onnxruntime, at any input size.

Chosen by `bench/accuracy.py` on the labelled public photos: float32 (int8 gained nothing
at two threads on an AVX2 CPU and changed answers from machine to machine), the long side
at 416 px (the size it was trained at) with no square padding. `objects-accurate` also
looks at the mirror image and keeps what both views agree on. See docs/models.md's tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

from mlapi.detectors.base import Options, StagedDetector
from mlapi.detectors.coco import COCO_LABELS
from mlapi.detectors.common import nms, to_original
from mlapi.errors import OptionError
from mlapi.images import Image
from mlapi.result import Detection

INPUT = 416  # the size NanoDet-Plus-m 416 was trained at
STRIDES = (8, 16, 32)
BINS = 11  # reg_max + 1 distribution bins per box side
MEAN = np.array([103.53, 116.28, 123.675], np.float32)  # BGR
STD = np.array([57.375, 57.12, 58.395], np.float32)
MEAN_RGB, INV_STD_RGB = MEAN[::-1].copy(), (1.0 / STD[::-1]).astype(np.float32)
PAD_RGB = (124, 116, 104)  # the mean colour: padding normalises to zero
# Class scores and box bins per stride, and the grid's width per stride.
Outputs = tuple[dict[int, np.ndarray], dict[int, np.ndarray], dict[int, int]]
Candidates = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes, scores, class ids


@dataclass(frozen=True)
class NanoDetOptions(Options):
    confidence: float = field(default=0.35, metadata={"min": 0.0, "max": 1.0})
    iou: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    labels: tuple[str, ...] = ()  # allow-list; empty means every class
    max_count: int = field(default=100, metadata={"min": 1, "max": 1000})
    # Long side of the network input, in pixels; larger finds smaller objects, slower.
    size: int = field(default=INPUT, metadata={"min": 160, "max": 1280})
    # Also look at the mirror image and keep what both views agree on (about 2× the time).
    flip: bool = False

    def __post_init__(self) -> None:
        unknown = sorted(set(self.labels) - set(COCO_LABELS))
        if unknown:
            raise OptionError(f"objects: labels not in COCO: {', '.join(unknown)}")


def decode_outputs(
    cls_by_stride: Mapping[int, np.ndarray],
    reg_by_stride: Mapping[int, np.ndarray],
    confidence: float,
    grid_width: Mapping[int, int],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NanoDet head → (boxes x1y1x2y2 in input pixels, scores, class ids), before NMS.

    `grid_width[stride]` is the number of cells per row at that stride. Class scores are
    already sigmoided; each box side is a softmax over BINS distances whose expectation,
    times the stride, is the distance from the anchor centre.
    """
    all_boxes, all_scores, all_classes = [], [], []
    for stride in STRIDES:
        scores = cls_by_stride[stride].reshape(-1, len(COCO_LABELS))
        best = scores.argmax(1)
        best_score = scores[np.arange(len(best)), best]
        idx = np.nonzero(best_score >= confidence)[0]
        if idx.size == 0:
            continue
        reg = reg_by_stride[stride].reshape(-1, 4, BINS)[idx]
        reg = np.exp(reg - reg.max(-1, keepdims=True))
        dist = (reg / reg.sum(-1, keepdims=True)) @ np.arange(BINS, dtype=np.float32) * stride
        columns = grid_width[stride]
        cx = (idx % columns + 0.5) * stride
        cy = (idx // columns + 0.5) * stride
        boxes = np.column_stack(
            [cx - dist[:, 0], cy - dist[:, 1], cx + dist[:, 2], cy + dist[:, 3]]
        )
        all_boxes.append(boxes)
        all_scores.append(best_score[idx])
        all_classes.append(best[idx])
    if not all_boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return np.concatenate(all_boxes), np.concatenate(all_scores), np.concatenate(all_classes)


def to_tensor(image: Image, size: int = INPUT) -> tuple[np.ndarray, float]:
    """Normalised 1×3×H×W BGR input and the factor back to image pixels.

    The long side becomes `size`; each side is padded only up to the next multiple of 32
    (the coarsest stride), so a wide frame is not padded into a square it does not fill.
    """
    pixels = image.pixels
    h, w = pixels.shape[:2]
    ratio = size / max(h, w)
    nw, nh = max(1, round(w * ratio)), max(1, round(h * ratio))
    interp = cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(pixels, (nw, nh), interpolation=interp)
    # One pass per output plane, written in place (a quarter of the time of normalising an
    # HWC copy and stacking its channels; the same float32 operations, so the same bits).
    out = np.empty((1, 3, -(-nh // 32) * 32, -(-nw // 32) * 32), np.float32)
    for plane, rgb in zip(out[0], (2, 1, 0), strict=True):  # the network wants BGR
        plane[:nh, :nw] = resized[:, :, rgb]
        plane[nh:, :] = PAD_RGB[rgb]
        plane[:nh, nw:] = PAD_RGB[rgb]
        plane -= MEAN_RGB[rgb]
        plane *= INV_STD_RGB[rgb]
    return out, 1.0 / ratio


FUSE_FLOOR = 0.15  # each view's candidates when fusing; the fused score is their mean
FUSE_IOU = 0.55


def fuse(views: list[Candidates]) -> Candidates:
    """Merge per-view detections of one image: boxes of a class that overlap become one,
    scored by the mean of each view's best score (a view that missed it adds 0), placed at
    the score-weighted mean box. Agreement between views raises precision."""
    boxes = np.concatenate([v[0] for v in views])
    scores = np.concatenate([v[1] for v in views])
    classes = np.concatenate([v[2] for v in views])
    view = np.concatenate([np.full(len(v[1]), i) for i, v in enumerate(views)])
    free = np.ones(len(scores), bool)
    out_boxes, out_scores, out_classes = [], [], []
    for i in np.argsort(-scores, kind="stable"):
        if not free[i]:
            continue
        group = np.nonzero(free & (classes == classes[i]))[0]
        group = group[box_iou(boxes[i], boxes[group]) >= FUSE_IOU]
        free[group] = False
        best = [
            g[np.argmax(scores[g])]
            for g in (group[view[group] == v] for v in range(len(views)))
            if g.size
        ]
        weights = scores[best]
        out_boxes.append(weights @ boxes[best] / weights.sum())
        out_scores.append(weights.sum() / len(views))
        out_classes.append(classes[i])
    if not out_boxes:
        return views[0]
    return np.array(out_boxes), np.array(out_scores, np.float32), np.array(out_classes)


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return np.asarray(inter / np.maximum(area + areas - inter, 1e-9))


class NanoDet(StagedDetector):
    name = "objects"
    task = "objects"
    description = "80 COCO object classes (NanoDet-Plus-m, float32)"
    models = ("nanodet",)
    min_side = INPUT
    Options = NanoDetOptions

    @classmethod
    def needed_side(cls, options: NanoDetOptions | None = None) -> int:
        return options.size if options else cls.Options().size

    def load(self) -> None:
        self.session, self.input_name = self.open_session()
        # Outputs are (cells, 80) class scores and (cells, 44) box bins per stride.
        self.outputs = [o.name for o in self.session.get_outputs()]

    def preprocess(self, image: Image, options: NanoDetOptions) -> tuple[np.ndarray, float]:
        return to_tensor(image, options.size)

    def infer(self, tensor: np.ndarray) -> Outputs:
        results = self.session.run(self.outputs, {self.input_name: tensor})
        height, width = tensor.shape[2:]
        cls_by_stride: dict[int, np.ndarray] = {}
        reg_by_stride: dict[int, np.ndarray] = {}
        for out in results:
            stride = round((height * width / out.shape[1]) ** 0.5)
            by_stride = cls_by_stride if out.shape[2] == len(COCO_LABELS) else reg_by_stride
            by_stride[stride] = out[0]
        return cls_by_stride, reg_by_stride, {s: width // s for s in STRIDES}

    def _kept(
        self, outputs: Outputs, factor: float, options: NanoDetOptions, floor: float
    ) -> Candidates:
        """Boxes in `image.pixels` pixels after per-class NMS, scored at least `floor`."""
        cls_by_stride, reg_by_stride, grid_width = outputs
        boxes, scores, classes = decode_outputs(cls_by_stride, reg_by_stride, floor, grid_width)
        if options.labels:
            wanted = np.isin(classes, [COCO_LABELS.index(lb) for lb in options.labels])
            boxes, scores, classes = boxes[wanted], scores[wanted], classes[wanted]
        keep = nms(boxes, scores, classes, options.iou)
        return boxes[keep] * factor, scores[keep], classes[keep]

    def candidates(self, image: Image, options: NanoDetOptions, floor: float) -> Candidates:
        tensor, factor = self.preprocess(image, options)
        return self._kept(self.infer(tensor), factor, options, floor)

    def postprocess(
        self, outputs: Outputs, factor: float, image: Image, options: NanoDetOptions
    ) -> list[Detection]:
        found = self._kept(outputs, factor, options, options.confidence)
        return self.detections(found, image, options)

    def detections(
        self, found: Candidates, image: Image, options: NanoDetOptions
    ) -> list[Detection]:
        boxes, scores, classes = found
        order = [i for i in np.argsort(-scores, kind="stable") if scores[i] >= options.confidence]
        return [
            Detection(
                COCO_LABELS[classes[i]],
                float(scores[i]),
                to_original(boxes[i], 1.0, image),
                self.name,
            )
            for i in order[: options.max_count]
        ]

    def detect(
        self, image: Image, options: NanoDetOptions, upstream: Mapping[str, list[Detection]]
    ) -> list[Detection]:
        if not options.flip:
            return super().detect(image, options, upstream)
        floor = min(FUSE_FLOOR, options.confidence)
        width = image.pixels.shape[1]
        mirror = Image(np.ascontiguousarray(image.pixels[:, ::-1]), image.width, image.height, "")
        boxes, scores, classes = self.candidates(mirror, options, floor)
        unmirrored = np.column_stack(
            [width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]]
        )
        views = [self.candidates(image, options, floor), (unmirrored, scores, classes)]
        return self.detections(fuse(views), image, options)


@dataclass(frozen=True)
class AccurateOptions(NanoDetOptions):
    flip: bool = True


class NanoDetAccurate(NanoDet):
    """Looks at the mirror image too: about twice the time, fewer false alarms."""

    name = "objects-accurate"
    description = "80 COCO object classes (NanoDet-Plus-m, image and mirror image fused)"
    Options = AccurateOptions
