"""Face crops shared by the detectors that refine `faces`: one aligned crop per face."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from mlapi.images import Image
from mlapi.result import Detection


def eye_angle(face: Detection) -> float:
    """Degrees to rotate so the eyes are level (0 without keypoints)."""
    if len(face.keypoints) < 2:
        return 0.0
    (rx, ry), (lx, ly) = face.keypoints[0], face.keypoints[1]
    return float(np.degrees(np.arctan2(ly - ry, lx - rx)))


def aligned_crop(
    image: Image, face: Detection, size: int, margin: float = 1.0, align: bool = True
) -> np.ndarray:
    """A size×size RGB crop centred on the face, eyes level, `margin` × the box's long side."""
    s = image.scale  # original → decoded pixels
    x1, y1, x2, y2 = (v * s for v in face.box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = max(x2 - x1, y2 - y1, 1.0) * margin
    matrix = cv2.getRotationMatrix2D((cx, cy), eye_angle(face) if align else 0.0, size / side)
    matrix[0, 2] += size / 2 - cx
    matrix[1, 2] += size / 2 - cy
    interp = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.warpAffine(
        image.pixels, matrix, (size, size), flags=interp, borderMode=cv2.BORDER_REPLICATE
    )


def batch(image: Image, faces: Sequence[Detection], size: int, margin: float = 1.0) -> np.ndarray:
    """All faces of an image as one N×size×size×3 uint8 batch (for one inference call)."""
    if not faces:
        return np.zeros((0, size, size, 3), np.uint8)
    return np.stack([aligned_crop(image, f, size, margin) for f in faces])


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of a grey crop: low means blurred."""
    grey = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())
