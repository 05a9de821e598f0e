"""`--changes-only`: is this frame's scene different from the last one reported?"""

from __future__ import annotations

from mlapi import attributes
from mlapi.result import Detection, Result


def _iou(a: list[int], b: list[int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 1.0


class ChangeTracker:
    """True when labels appear or disappear, or a box moved (IoU below `min_iou`). A
    recognised face counts by its person's name and a plate by what it reads (see
    seen_objects), so a new person or a new plate is a change where the box is not."""

    def __init__(self, min_iou: float = 0.5) -> None:
        self.min_iou = min_iou
        self._last: list[tuple[str, list[int]]] | None = None

    def changed(self, seen: list[tuple[str, list[int]]]) -> bool:
        last, self._last = self._last, seen
        if last is None:
            return True
        if sorted(label for label, _ in last) != sorted(label for label, _ in seen):
            return True
        unmatched = list(last)
        for label, box in seen:
            best = max(
                (c for c in unmatched if c[0] == label), key=lambda c: _iou(c[1], box), default=None
            )
            if best is None or _iou(best[1], box) < self.min_iou:
                return True
            unmatched.remove(best)
        self._last = last  # unchanged: keep comparing against what was last reported
        return False


def seen_objects(result: Result) -> list[tuple[str, list[int]]]:
    """(label, box) of each detection; a recognised face by its person's name, a plate by
    its reading ("plate 5AU5341": a plate not read in the frame before is a change)."""
    return [(_seen_as(d), list(d.box)) for d in result.detections]


def _seen_as(d: Detection) -> str:
    plate = attributes.plate(d)
    if plate is not None:
        return f"{d.label} {plate}"
    return attributes.known_identity(d) or d.label
