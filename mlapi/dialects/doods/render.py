"""DOODS answers: boxes as fractions of the image, confidence in percent."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlapi.result import Result


def detections(result: Result, thresholds: Mapping[str, float]) -> list[dict[str, Any]]:
    """Detections at or above their label's threshold in percent (`*`: any other label;
    no thresholds: every detection)."""
    found = []
    for d in result.detections:
        threshold = thresholds.get(d.label, thresholds.get("*")) if thresholds else 0.0
        if threshold is None or d.confidence * 100 < threshold:
            continue
        x1, y1, x2, y2 = d.box
        found.append(
            {
                "top": round(y1 / result.height, 6),
                "left": round(x1 / result.width, 6),
                "bottom": round(y2 / result.height, 6),
                "right": round(x2 / result.width, 6),
                "label": d.label,
                "confidence": round(d.confidence * 100, 2),
            }
        )
    return found


def document(
    request_id: str, result: Result, thresholds: Mapping[str, float], duration: float
) -> dict[str, Any]:
    return {"id": request_id, "detections": detections(result, thresholds), "duration": duration}
