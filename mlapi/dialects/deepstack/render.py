"""DeepStack / CodeProject.AI answers: `{"success": true, …, "duration": 0}`."""

from __future__ import annotations

from typing import Any

from mlapi import attributes
from mlapi.result import Detection, Result


def document(**body: Any) -> dict[str, Any]:
    return {"success": True, **body, "duration": 0}


def box(d: Detection) -> dict[str, int]:
    return {"x_min": d.box[0], "y_min": d.box[1], "x_max": d.box[2], "y_max": d.box[3]}


def objects(result: Result, limit: int) -> dict[str, Any]:
    """The `limit` most confident objects."""
    found = sorted(result.detections, key=lambda d: -d.confidence)[:limit]
    predictions = [
        {"label": d.label, "confidence": round(d.confidence, 4), **box(d)} for d in found
    ]
    return document(predictions=predictions, count=len(predictions))


def faces(result: Result) -> dict[str, Any]:
    predictions = [{"confidence": round(d.confidence, 4), **box(d)} for d in result.detections]
    return document(predictions=predictions)


def recognized(result: Result) -> dict[str, Any]:
    """Faces, most similar first; an unknown face is `unknown` with confidence 0."""
    predictions = []
    for d in sorted(result.detections, key=lambda d: -attributes.similarity(d)):
        name = attributes.known_identity(d)
        predictions.append(
            {
                "userid": name or attributes.UNKNOWN,
                "confidence": round(attributes.similarity(d), 4) if name else 0,
                **box(d),
            }
        )
    return document(predictions=predictions)


def plates(result: Result, process_ms: int, inference_ms: int) -> dict[str, Any]:
    """CodeProject.AI's ALPR module's answer (its ALPR_adapter.py and ALPR.py): each plate
    as `Plate: ABC123` with its letters and digits in `plate`, most confident first, and a
    message naming them."""
    found = sorted(result.detections, key=lambda d: -d.confidence)
    predictions = [
        {
            "confidence": round(d.confidence, 4),
            "label": f"Plate: {attributes.plate(d)}",
            "plate": attributes.plate(d),
            **box(d),
        }
        for d in found
    ]
    labels = ", ".join(f"Plate: {attributes.plate(d)}" for d in found)
    if len(predictions) > 3:
        message = f"Found {labels}..."
    else:
        message = f"Found {labels}" if predictions else "No plates found"
    return {
        "success": True,
        "predictions": predictions,
        "message": message,
        "processMs": process_ms,
        "inferenceMs": inference_ms,
        "moduleId": "ALPR",
        "command": "alpr",
        "code": 200,
    }
