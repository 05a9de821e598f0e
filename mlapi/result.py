"""The one canonical result, and its one serializer.

Every dialect (CLI formats, server routes) renders from these objects, so the same input
gives the same bytes everywhere. No timings, ids or host names go in here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Box = tuple[int, int, int, int]

CONFIDENCE_DIGITS = 4
FLOAT_DIGITS = 6


@dataclass(frozen=True)
class Detection:
    label: str
    confidence: float  # 0..1
    box: Box  # x1, y1, x2, y2 in original upright pixels
    model: str  # the detector that produced it
    keypoints: tuple[tuple[int, int], ...] = ()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    embedding: tuple[float, ...] = ()
    # What `recognize` keeps of the face for the memory of faces seen (mlapi.sightings):
    # never rendered, never compared, dropped by `canonical`.
    memo: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Result:
    width: int
    height: int
    detections: tuple[Detection, ...]
    # Seconds each detector took: for the Server-Timing header, never in the document.
    stages: Mapping[str, float] = field(default_factory=dict, compare=False)


def clip_box(x1: float, y1: float, x2: float, y2: float, width: int, height: int) -> Box:
    """Round a float box to integer pixels inside the image."""
    return (
        int(min(max(round(x1), 0), width)),
        int(min(max(round(y1), 0), height)),
        int(min(max(round(x2), 0), width)),
        int(min(max(round(y2), 0), height)),
    )


def _clean(value: Any) -> Any:
    """Fixed rounding for floats, plain lists for sequences."""
    if isinstance(value, float):
        return round(value, FLOAT_DIGITS)
    if isinstance(value, Mapping):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_clean(v) for v in value]
    return value


def detection_to_dict(d: Detection) -> dict[str, Any]:
    out: dict[str, Any] = {
        "label": d.label,
        "confidence": round(float(d.confidence), CONFIDENCE_DIGITS),
        "box": list(d.box),
        "model": d.model,
    }
    if d.keypoints:
        out["keypoints"] = [list(p) for p in d.keypoints]
    if d.attributes:
        out["attributes"] = _clean(dict(d.attributes))
    if d.embedding:
        out["embedding"] = [round(float(v), FLOAT_DIGITS) for v in d.embedding]
    return out


def result_to_dict(result: Result) -> dict[str, Any]:
    return {
        "width": result.width,
        "height": result.height,
        "detections": [detection_to_dict(d) for d in result.detections],
    }


def result_from_dict(document: Mapping[str, Any]) -> Result:
    """A native document (a server's answer) back as a Result: `result_to_dict` of it gives
    the same document again, so a remote result renders to the same bytes."""
    return Result(
        int(document["width"]),
        int(document["height"]),
        tuple(
            Detection(
                str(d["label"]),
                float(d["confidence"]),
                (int(d["box"][0]), int(d["box"][1]), int(d["box"][2]), int(d["box"][3])),
                str(d["model"]),
                tuple((int(x), int(y)) for x, y in d.get("keypoints", ())),
                dict(d.get("attributes", {})),
                tuple(float(v) for v in d.get("embedding", ())),
            )
            for d in document["detections"]
        ),
    )


def canonical(result: Result) -> Result:
    """The result as its native document holds it (rounded): what every other wire shape
    renders from, so a shape rendered from a server's native answer is the same bytes."""
    return result_from_dict(result_to_dict(result))


def dumps(document: Any) -> str:
    """The one JSON encoding used on stdout and on the wire."""
    return json.dumps(document, ensure_ascii=False, separators=(", ", ": "))
