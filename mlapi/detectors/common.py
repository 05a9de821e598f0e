"""Pre- and post-processing shared by detectors: letterboxing, NMS, box mapping."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from mlapi.images import Image
from mlapi.result import Box, clip_box

PRE_NMS_TOP_K = 2000


def letterbox(
    rgb: np.ndarray, size: int, pad: Sequence[int] = (0, 0, 0)
) -> tuple[np.ndarray, float]:
    """Resize the long side to `size`, keep the aspect ratio, pad right/bottom.

    Returns the size×size canvas and the factor from canvas pixels back to `rgb` pixels.
    """
    h, w = rgb.shape[:2]
    ratio = size / max(h, w)
    nw, nh = max(1, round(w * ratio)), max(1, round(h * ratio))
    interp = cv2.INTER_AREA if ratio < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(rgb, (nw, nh), interpolation=interp)
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[:] = pad
    canvas[:nh, :nw] = resized
    return canvas, 1.0 / ratio


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float) -> np.ndarray:
    """Per-class non-maximum suppression; indices of kept boxes, best first."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    if len(boxes) > PRE_NMS_TOP_K:  # NMS is quadratic; weak candidates cannot survive anyway
        top = np.argpartition(-scores, PRE_NMS_TOP_K)[:PRE_NMS_TOP_K]
        kept: np.ndarray = top[nms(boxes[top], scores[top], classes[top], iou)]
        return kept
    xywh = np.column_stack(
        [boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]]
    )
    found = cv2.dnn.NMSBoxesBatched(
        xywh.astype(np.float32).tolist(),
        scores.astype(np.float32).tolist(),
        classes.astype(np.int32).tolist(),
        0.0,
        float(iou),
    )
    keep = np.asarray(found, np.int64).reshape(-1)
    return keep[np.argsort(-scores[keep], kind="stable")]


def to_original(box: np.ndarray, factor: float, image: Image) -> Box:
    """Map a box in model-input pixels to original upright pixels."""
    scale = factor / image.scale
    x1, y1, x2, y2 = (float(v) * scale for v in box)
    return clip_box(x1, y1, x2, y2, image.width, image.height)


def sigmoid(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-np.clip(x, -80, 80)))
    return out
