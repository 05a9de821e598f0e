"""pyzm's gateway answer: `{"detections": [{label, confidence, box, type, model_name}]}`."""

from __future__ import annotations

from typing import Any

from mlapi import attributes
from mlapi.result import Detection, Result


def document(detections: list[dict[str, Any]], error: str | None = None) -> dict[str, Any]:
    return {"detections": detections, "error": error}


def detections(result: Result, kind: str, model_name: str) -> dict[str, Any]:
    """`kind`: pyzm's model type (object, face, alpr); a face is labelled with its name, a
    plate with its letters and digits."""
    return document(
        [
            {
                "label": _label(d, kind),
                "confidence": round(_face_score(d) if kind == "face" else d.confidence, 4),
                "box": list(d.box),
                "type": kind,
                "model_name": model_name,
            }
            for d in result.detections
        ]
    )


def _label(d: Detection, kind: str) -> str:
    if kind == "alpr":
        return attributes.plate(d) or d.label
    if kind != "face":
        return d.label
    return attributes.known_identity(d) or attributes.UNKNOWN


def _face_score(d: Detection) -> float:
    """A named face's similarity; an unknown face's detection confidence."""
    return attributes.similarity(d) if attributes.known_identity(d) else d.confidence
