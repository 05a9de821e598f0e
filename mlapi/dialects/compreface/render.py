"""CompreFace's face items: a box with CompreFace's probability, and its plugins' fields.

BlazeFace scores real faces 0.6-0.9 where CompreFace's detector scores them about 0.99,
so a confidence c is reported as 0.8 + (c - 0.5) × 0.4.
"""

from __future__ import annotations

from typing import Any

from mlapi import attributes
from mlapi.result import Detection


def probability(confidence: float) -> float:
    return round(min(1.0, 0.8 + (confidence - 0.5) * 0.4), 5)


def box(d: Detection) -> dict[str, Any]:
    x1, y1, x2, y2 = d.box
    return {
        "probability": probability(d.confidence),
        "x_min": x1,
        "y_min": y1,
        "x_max": x2,
        "y_max": y2,
    }


def plugins(d: Detection, wanted: set[str]) -> dict[str, Any]:
    age, gender = attributes.age(d), attributes.gender(d)
    out: dict[str, Any] = {}
    if "age" in wanted and age is not None:
        out["age"] = {"probability": 0.8, "high": round(age + 5), "low": max(0, round(age - 5))}
    if "gender" in wanted and gender is not None:
        out["gender"] = {"probability": round(gender["confidence"], 5), "value": gender["label"]}
    return out
