"""Draw detections onto a copy of an image (for `--annotate`, on photos and video).

Each box gets one label: a recognised person's name with the similarity recognition
found ("Richard (similarity 0.85)"), a known plate's name, else the label with its
confidence; then what refining detectors found (gender, age, expression) or what a plate
or a line of text reads. Labels are placed so they never cover a face, nor one another:
touching their box (above, below, beside it; inside it unless it is a face), else further
up or down; where even that is taken, a shorter label, else none.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

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
FACE = "face"  # the label of a face box: no label may cover one
Rect = tuple[int, int, int, int]  # x1, y1, x2, y2


def headline(d: Detection) -> str:
    """Who or what it is: a recognised face by name with recognition's similarity (not the
    face detector's confidence), a known plate by its name, else the label."""
    name = attributes.known_identity(d)
    if name:
        return f"{name} (similarity {attributes.similarity(d):.2f})"
    return f"{attributes.plate_name(d) or d.label} {d.confidence:.2f}"


def caption(d: Detection) -> str:
    """What a person should read beside the box."""
    parts = [headline(d)]
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


def _spots(box: Rect, w: int, h: int, shape: tuple[int, int], inside: bool) -> Iterator[Rect]:
    """Where a w×h label may go, nearest its box first: above and below it (inside it
    when allowed), in columns along its width; beside it; then ever further up and down."""
    height, width = shape
    x1, y1, x2, y2 = box

    def column(x: int) -> int:
        return min(max(x, 0), max(width - w, 0))

    xs = [x1, x2 - w, *range(x1 + w // 2, x2 - w, max(w // 2, 1))]
    columns = list(dict.fromkeys(column(x) for x in xs))
    rows = [y1 - h, y2]
    if inside:
        rows += list(range(y1, y2 - h + 1, max(h // 2, 1)))
    for y in rows:
        for x in columns:
            yield (x, y, x + w, y + h)
    yield (x2 + 1, y1, x2 + 1 + w, y1 + h)
    yield (x1 - 1 - w, y1, x1 - 1, y1 + h)
    for step in range(1, height // max(h, 1) + 1):
        for y in (y1 - h - step * h, y2 + step * h):
            for x in columns:
                yield (x, y, x + w, y + h)


def _place(
    box: Rect,
    size: tuple[int, int],
    taken: list[Rect],
    shape: tuple[int, int],
    faces: Sequence[Rect] = (),
    inside: bool = True,
) -> Rect | None:
    """Where a label of `size` (w, h) goes: inside the picture, clear of every face box
    in `faces` and of the labels already `taken`, as near its box as it can be; None when
    nowhere is."""
    w, h = size
    height, width = shape
    for spot in _spots(box, w, h, shape, inside):
        if spot[0] < 0 or spot[1] < 0 or spot[2] > width or spot[3] > height:
            continue
        if not any(_overlaps(spot, r) for r in (*faces, *taken)):
            return spot
    return None


@dataclass(frozen=True)
class Label:
    detection: Detection
    text: str
    spot: Rect  # where its filled rectangle goes
    baseline: int  # the text's baseline, from the spot's top


def layout(result: Result, shape: tuple[int, int], thickness: int) -> list[Label]:
    """Every label that fits, with its place: most confident first (nearest its box), each
    clear of every face box (as drawn, its line included) and of the labels before it. A
    label that finds no place is shortened to who or what it is; failing that, left out."""
    scale = 0.4 * thickness
    pad = thickness  # a face box's line reaches this far outside its corners
    faces = [
        (d.box[0] - pad, d.box[1] - pad, d.box[2] + pad, d.box[3] + pad)
        for d in result.detections
        if d.label == FACE
    ]
    taken: list[Rect] = []
    labels = []
    for d in sorted(result.detections, key=lambda d: -d.confidence):
        for text in dict.fromkeys((caption(d), headline(d))):
            (tw, th), base = cv2.getTextSize(text, FONT, scale, thickness)
            spot = _place(d.box, (tw + 2, th + base + 2), taken, shape, faces, d.label != FACE)
            if spot is not None:
                taken.append(spot)
                labels.append(Label(d, text, spot, th + 1))
                break
    return labels


def draw(rgb: np.ndarray, result: Result) -> np.ndarray:
    """An RGB copy of `rgb` (the full-size upright image) with boxes, labels and keypoints."""
    out = np.ascontiguousarray(rgb.copy())
    thickness = max(1, round(max(out.shape[:2]) / 500))
    names = sorted({d.label for d in result.detections})

    def colour(d: Detection) -> tuple[int, int, int]:
        return COLOURS[names.index(d.label) % len(COLOURS)]

    for d in result.detections:  # every box first: a label is never hidden under a box
        cv2.rectangle(out, d.box[:2], d.box[2:], colour(d), thickness)
        for x, y in d.keypoints:
            cv2.circle(out, (x, y), thickness + 1, colour(d), -1)
    for label in layout(result, out.shape[:2], thickness):
        x1, y1, x2, y2 = label.spot
        cv2.rectangle(out, (x1, y1), (x2 - 1, y2 - 1), colour(label.detection), -1)
        cv2.putText(
            out, label.text, (x1 + 1, y1 + label.baseline), FONT, 0.4 * thickness,
            (255, 255, 255), thickness, cv2.LINE_AA,
        )  # fmt: skip
    return out
