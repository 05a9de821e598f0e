"""The seed mlapi's detection array: type, percent-string confidence, box."""

from __future__ import annotations

from typing import Any

from mlapi.result import Detection, Result


def percent(value: float) -> str:
    return f"{value * 100:.2f}%"


def render_detection(d: Detection) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": d.label,
        "confidence": percent(d.confidence),
        "box": list(d.box),
    }
    gender = d.attributes.get("gender") if d.attributes else None
    if gender:
        item["gender"] = {"male": "man", "female": "woman"}.get(gender["label"], gender["label"])
        item["gender_confidence"] = percent(gender["confidence"])
    return item


def render(result: Result) -> list[dict[str, Any]]:
    return [render_detection(d) for d in result.detections]
