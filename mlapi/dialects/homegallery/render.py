"""HomeGallery api-server's answers: /objects, /faces and /embeddings documents."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from mlapi import attributes
from mlapi.result import Result


def _envelope(body: bytes, model: str, result: Result) -> dict[str, Any]:
    return {
        "srcSha1sum": hashlib.sha1(body).hexdigest(),
        "model": model,
        "created": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "width": result.width,
        "height": result.height,
    }


def embeddings(body: bytes, result: Result) -> dict[str, Any]:
    doc = _envelope(body, "mobilenet_v2", result)
    del doc["width"], doc["height"]  # the client's embeddings answer has no size
    doc["version"] = "1.4_224"
    doc["data"] = [round(v, 6) for v in result.detections[0].embedding]
    return doc


def objects(body: bytes, result: Result) -> dict[str, Any]:
    doc = _envelope(body, "nanodet", result)
    doc["version"] = "plus-m-416"
    doc["data"] = [
        {
            "bbox": [d.box[0], d.box[1], d.box[2] - d.box[0], d.box[3] - d.box[1]],
            "class": d.label,
            "score": round(d.confidence, 4),
        }
        for d in result.detections
    ]
    return doc


def faces(body: bytes, result: Result) -> dict[str, Any]:
    doc = _envelope(body, "blazeface+faceres+dlib", result)
    data = []
    for d in result.detections:
        x1, y1, x2, y2 = d.box
        face: dict[str, Any] = {
            "alignedRect": {
                "box": {"x": x1, "y": y1, "width": x2 - x1, "height": y2 - y1},
                "score": round(d.confidence, 4),
            },
            "landmarks": {"positions": [{"x": x, "y": y} for x, y in d.keypoints]},
        }
        gender, age = attributes.gender(d), attributes.age(d)
        expressions = attributes.expressions(d)
        if gender:
            face["gender"] = gender["label"]
            face["genderProbability"] = round(gender["confidence"], 4)
        if age is not None:
            face["age"] = round(age, 1)
        if expressions is not None:
            face["expressions"] = {k: round(v, 4) for k, v in expressions.items()}
        if d.embedding:
            face["descriptor"] = [round(v, 6) for v in d.embedding]
        data.append(face)
    doc["data"] = data
    return doc
