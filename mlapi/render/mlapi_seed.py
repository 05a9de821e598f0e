"""The seed mlapi's detection array: type, percent-string confidence, box; and `label`,
which ZoneMinder's zm_detect 5.7 and later reads (mlapi 2.x added it): a face's name, a
plate's letters and digits, else the label."""

from __future__ import annotations

from typing import Any

from mlapi import attributes
from mlapi.result import Detection, Result, canonical


def percent(value: float) -> str:
    return f"{value * 100:.2f}%"


def label(d: Detection) -> str:
    """What zm_detect shows and matches its patterns on: a face's name, a plate's reading."""
    return attributes.identity(d) or attributes.plate(d) or d.label


def render_detection(d: Detection) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": d.label,
        "label": label(d),
        "confidence": percent(d.confidence),
        "box": list(d.box),
    }
    gender = attributes.gender(d)
    if gender:
        item["gender"] = {"male": "man", "female": "woman"}.get(gender["label"], gender["label"])
        item["gender_confidence"] = percent(gender["confidence"])
    return item


def render(result: Result) -> list[dict[str, Any]]:
    return [render_detection(d) for d in canonical(result).detections]


def render_zm_detect(
    result: Result,
    frame_id: str = "snapshot",
    resized: list[int] | None = None,
    original: list[int] | None = None,
) -> dict[str, Any]:
    """mlapi 2.x's `response_format=zm_detect`, what zm_detect 6.x parses: the frame the
    matches are from, and its [height, width] as read and as resized for detection."""
    found = result.detections
    matched = {
        "boxes": [list(d.box) for d in found],
        "labels": [label(d) for d in found],
        "confidences": [round(d.confidence, 4) for d in found],
        "frame_id": frame_id,
        "model_names": [d.model for d in found],
        "image_dimensions": {
            "original": original or [result.height, result.width],
            "resized": resized,
        },
        "polygons": [],
        "error_boxes": [],
        "image": None,
    }
    return {"matched_data": matched, "all_matches": [matched]}
