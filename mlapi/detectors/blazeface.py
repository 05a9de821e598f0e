"""`faces`: MediaPipe BlazeFace full range on onnxruntime, with six keypoints.

Keypoints, in order: right eye, left eye, nose tip, mouth centre, right ear, left ear
(right/left from the subject's point of view).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlapi.detectors.base import Options, StagedDetector
from mlapi.detectors.common import letterbox, nms, sigmoid, to_original
from mlapi.images import Image
from mlapi.result import Detection, clip_box

INPUT = 192
GRID = 48  # one anchor per cell of a 48×48 grid (stride 4)
STRIDE = INPUT // GRID
KEYPOINTS = 6
OUTPUT = "Identity:0"  # (N, 2304, 17): score logit, box (dx, dy, w, h), 6 × keypoint (dx, dy)


@dataclass(frozen=True)
class BlazeFaceOptions(Options):
    confidence: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    iou: float = field(default=0.3, metadata={"min": 0.0, "max": 1.0})
    max_count: int = field(default=100, metadata={"min": 1, "max": 1000})


def anchors() -> np.ndarray:
    cells = (np.arange(GRID, dtype=np.float32) + 0.5) * STRIDE
    xs, ys = np.meshgrid(cells, cells)
    return np.column_stack([xs.ravel(), ys.ravel()])


def decode_outputs(
    raw: np.ndarray, centres: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(anchors, 17) head → boxes x1y1x2y2, scores and keypoints (K, 6, 2), in input pixels."""
    scores = sigmoid(raw[:, 0])
    idx = np.nonzero(scores >= confidence)[0]
    raw, c = raw[idx], centres[idx]
    cx, cy = c[:, 0] + raw[:, 1], c[:, 1] + raw[:, 2]
    half_w, half_h = raw[:, 3] / 2, raw[:, 4] / 2
    boxes = np.column_stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h])
    points = raw[:, 5 : 5 + 2 * KEYPOINTS].reshape(-1, KEYPOINTS, 2) + c[:, None, :]
    return boxes, scores[idx], points


class BlazeFace(StagedDetector):
    name = "faces"
    task = "faces"
    description = "faces with 6 keypoints (MediaPipe BlazeFace full range)"
    models = ("blazeface-full",)
    min_side = INPUT
    Options = BlazeFaceOptions

    def load(self) -> None:
        self.session, self.input_name = self.open_session()
        self.centres = anchors()

    def preprocess(self, image: Image, options: BlazeFaceOptions) -> tuple[np.ndarray, float]:
        canvas, factor = letterbox(image.pixels, INPUT, pad=(0, 0, 0))
        return (canvas.astype(np.float32) / 127.5 - 1.0)[None], factor

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        return np.asarray(self.session.run([OUTPUT], {self.input_name: tensor})[0][0])

    def postprocess(
        self, raw: np.ndarray, factor: float, image: Image, options: BlazeFaceOptions
    ) -> list[Detection]:
        boxes, scores, points = decode_outputs(raw, self.centres, options.confidence)
        keep = nms(boxes, scores, np.zeros(len(scores), np.int32), options.iou)
        scale = factor / image.scale
        out = []
        for i in keep[: options.max_count]:
            kps = tuple(
                clip_box(x * scale, y * scale, 0, 0, image.width, image.height)[:2]
                for x, y in points[i]
            )
            box = to_original(boxes[i], factor, image)
            out.append(Detection("face", float(scores[i]), box, self.name, keypoints=kps))
        return out
