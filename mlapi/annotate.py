"""Draw detections onto a copy of an image (for `--annotate`, on photos and video).

Each box gets one label: the person's name when recognised (or a known plate's), else
the label, with its confidence and what refining detectors found (gender, age, expression)
or what a plate or a line of text reads. Labels are placed so they never cover one
another: above the box, else below it, else inside it, moving down past labels already
drawn.
"""

from __future__ import annotations

import cv2
import numpy as np

from mlapi import attributes
from mlapi.result import Detection, Result

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
FONT = cv2.FONT_HERSHEY_SIMPLEX
Rect = tuple[int, int, int, int]  # x1, y1, x2, y2


def caption(d: Detection) -> str:
    """What a person should read beside the box."""
    who = attributes.known_identity(d) or attributes.plate_name(d)  # a person, a known plate
    parts = [f"{who or d.label} {d.confidence:.2f}"]
    gender, age = attributes.gender(d), attributes.age(d)
    if gender:
        parts.append(gender["label"] + (f" {age:.0f}" if age is not None else ""))
    elif age is not None:
        parts.append(f"age {age:.0f}")
    emotion = d.attributes.get(attributes.EMOTION)
    if emotion:
        parts.append(str(emotion))
    reading = attributes.plate(d) or attributes.text(d)  # what a plate or line says
    if reading:
        parts.append(str(reading))
    return " | ".join(parts)


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place(box: Rect, size: tuple[int, int], taken: list[Rect], shape: tuple[int, int]) -> Rect:
    """Where a label of `size` (w, h) goes: touching its box, clear of labels already placed."""
    w, h = size
    height, width = shape
    x = min(max(box[0], 0), max(width - w, 0))
    for y in (box[1] - h, box[3], box[1]):  # above, below, inside the top edge
        while 0 <= y <= height - h:
            spot = (x, y, x + w, y + h)
            clash = [t for t in taken if _overlaps(spot, t)]
            if not clash:
                return spot
            y = max(t[3] for t in clash)  # just below what is in the way
    return (x, max(min(box[1], height - h), 0), x + w, max(min(box[1], height - h), 0) + h)


def draw(rgb: np.ndarray, result: Result) -> np.ndarray:
    """An RGB copy of `rgb` (the full-size upright image) with boxes, labels and keypoints."""
    out = np.ascontiguousarray(rgb.copy())
    thickness = max(1, round(max(out.shape[:2]) / 500))
    scale = 0.4 * thickness
    names = sorted({d.label for d in result.detections})
    for d in result.detections:  # every box first: a label is never hidden under a box
        colour = COLOURS[names.index(d.label) % len(COLOURS)]
        cv2.rectangle(out, d.box[:2], d.box[2:], colour, thickness)
        for x, y in d.keypoints:
            cv2.circle(out, (x, y), thickness + 1, colour, -1)
    taken: list[Rect] = []
    # Most confident first: it gets the place nearest its box.
    for d in sorted(result.detections, key=lambda d: -d.confidence):
        colour = COLOURS[names.index(d.label) % len(COLOURS)]
        text = caption(d)
        (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
        spot = _place(d.box, (tw + 2, th + base + 2), taken, out.shape[:2])
        taken.append(spot)
        cv2.rectangle(out, spot[:2], (spot[2] - 1, spot[3] - 1), colour, -1)
        cv2.putText(
            out, text, (spot[0] + 1, spot[1] + th + 1), FONT, scale, (255, 255, 255), thickness,
            cv2.LINE_AA,
        )  # fmt: skip
    return out
