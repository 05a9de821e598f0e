"""The attributes detectors attach to a face, written and read through this one module.

Detectors build them with the constructors below and renderers read them with the
accessors, so renaming an attribute is one change here (and the JSON Schema's
`attributes` lists these keys). A plugin detector may add keys of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from mlapi.result import Detection

# The keys, as they appear in the native JSON.
GENDER = "gender"  # {"label": "male" | "female", "confidence": 0..1}
AGE = "age"  # years
GENDERAGE_MODEL = "genderage"  # which network estimated them
EXPRESSIONS = "expressions"  # {expression: probability}, summing to 1
EMOTION = "emotion"  # the most probable expression
IDENTITY = "identity"  # a known person's name, or UNKNOWN
SIMILARITY = "similarity"  # 0..1, to the closest known person
FACEPRINT = "faceprint"  # which network made the embedding (dlib, faceres)

UNKNOWN = "unknown"  # the identity of a face like nobody in the gallery
KNOWN = (GENDER, AGE, GENDERAGE_MODEL, EXPRESSIONS, EMOTION, IDENTITY, SIMILARITY, FACEPRINT)


class Scored(TypedDict):
    label: str
    confidence: float


# -- writing (detectors) -----------------------------------------------------------------
def gender_age(label: str, confidence: float, age: float, model: str) -> dict[str, Any]:
    gender: Scored = {"label": label, "confidence": confidence}
    return {GENDER: gender, AGE: age, GENDERAGE_MODEL: model}


def expression(probabilities: Mapping[str, float]) -> dict[str, Any]:
    best = max(probabilities, key=lambda k: probabilities[k])
    return {EXPRESSIONS: dict(probabilities), EMOTION: best}


def recognised(identity: str, similarity: float) -> dict[str, Any]:
    return {IDENTITY: identity, SIMILARITY: similarity}


def faceprinted(model: str) -> dict[str, Any]:
    return {FACEPRINT: model}


# -- reading (renderers) -----------------------------------------------------------------
def gender(d: Detection) -> Scored | None:
    value = d.attributes.get(GENDER)
    if not value:
        return None
    return {"label": str(value["label"]), "confidence": float(value["confidence"])}


def age(d: Detection) -> float | None:
    value = d.attributes.get(AGE)
    return None if value is None else float(value)


def expressions(d: Detection) -> dict[str, float] | None:
    value = d.attributes.get(EXPRESSIONS)
    return {str(k): float(v) for k, v in value.items()} if value is not None else None


def identity(d: Detection) -> str | None:
    """The name the recogniser gave (UNKNOWN included); None when it did not run."""
    value = d.attributes.get(IDENTITY)
    return None if value is None else str(value)


def known_identity(d: Detection) -> str | None:
    """A known person's name, or None (unknown, or not recognised)."""
    name = identity(d)
    return None if name in (None, UNKNOWN) else name


def similarity(d: Detection) -> float:
    return float(d.attributes.get(SIMILARITY, 0.0))


def faceprint_model(d: Detection) -> str:
    return str(d.attributes.get(FACEPRINT, "dlib"))


SCHEMA: dict[str, Any] = {  # what result.schema.json says of each key
    GENDER: {
        "type": "object",
        "required": ["label", "confidence"],
        "properties": {
            "label": {"enum": ["male", "female"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
    },
    AGE: {"type": "number", "minimum": 0},
    GENDERAGE_MODEL: {"type": "string"},
    EXPRESSIONS: {"type": "object", "additionalProperties": {"type": "number"}},
    EMOTION: {"type": "string"},
    IDENTITY: {"type": "string", "description": f"a known person, or {UNKNOWN!r}"},
    SIMILARITY: {"type": "number", "minimum": 0, "maximum": 1},
    FACEPRINT: {"type": "string", "description": "the network that made the embedding"},
}
