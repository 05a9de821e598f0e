"""Draw detections onto a copy of an image (for `--annotate`)."""

from __future__ import annotations

import cv2
import numpy as np

from mlapi.result import Result

COLOURS = (
    (255, 56, 56),
    (56, 168, 255),
    (72, 249, 10),
    (255, 157, 151),
    (207, 210, 49),
    (146, 204, 23),
    (61, 219, 134),
    (26, 147, 52),
    (0, 212, 187),
    (255, 178, 29),
)


def draw(rgb: np.ndarray, result: Result) -> np.ndarray:
    """An RGB copy of `rgb` (the full-size upright image) with boxes, labels and keypoints."""
    out = np.ascontiguousarray(rgb.copy())
    thickness = max(1, round(max(out.shape[:2]) / 500))
    labels = sorted({d.label for d in result.detections})
    for d in result.detections:
        colour = COLOURS[labels.index(d.label) % len(COLOURS)]
        x1, y1, x2, y2 = d.box
        cv2.rectangle(out, (x1, y1), (x2, y2), colour, thickness)
        text = f"{d.label} {d.confidence:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thickness, thickness)
        top = max(y1 - th - base, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw, top + th + base), colour, -1)
        cv2.putText(
            out,
            text,
            (x1, top + th),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.4 * thickness,
            (255, 255, 255),
            thickness,
            cv2.LINE_AA,
        )
        for x, y in d.keypoints:
            cv2.circle(out, (x, y), thickness + 1, colour, -1)
    return out
