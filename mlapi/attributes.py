"""The attributes detectors attach to a detection (a face's gender, age, expression and
identity; what a plate or a line of text reads, and whose plate it is), written and read
through this one module.

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
TEXT = "text"  # a line of text (or a plate) as read
PLATE = "plate"  # a plate's reading: upper-case letters and digits only
VEHICLE = "vehicle"  # the objects label of the vehicle a plate is on
NAME = "name"  # the name of the known plate a plate reads as (`mlapi plates add`)

UNKNOWN = "unknown"  # the identity of a face like nobody in the gallery
KNOWN = (
    GENDER, AGE, GENDERAGE_MODEL, EXPRESSIONS, EMOTION, IDENTITY, SIMILARITY, FACEPRINT,
    TEXT, PLATE, VEHICLE, NAME,
)  # fmt: skip


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


def read_text(text: str) -> dict[str, Any]:
    return {TEXT: text}


def read_plate(plate: str, text: str, vehicle: str | None = None) -> dict[str, Any]:
    """A plate: its letters and digits, the line(s) as read, the vehicle it is on."""
    found: dict[str, Any] = {PLATE: plate, TEXT: text}
    if vehicle is not None:
        found[VEHICLE] = vehicle
    return found


def known_plate(name: str) -> dict[str, Any]:
    return {NAME: name}


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


def text(d: Detection) -> str | None:
    """What a line of text (or a plate) reads, as read; None for other detections."""
    value = d.attributes.get(TEXT)
    return None if value is None else str(value)


def plate(d: Detection) -> str | None:
    """A plate's letters and digits; None for other detections."""
    value = d.attributes.get(PLATE)
    return None if value is None else str(value)


def plate_name(d: Detection) -> str | None:
    """The name of the known plate this plate reads as; None when it is no known plate."""
    value = d.attributes.get(NAME)
    return None if value is None else str(value)


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
    TEXT: {"type": "string", "description": "the line (or plate) as read"},
    PLATE: {"type": "string", "description": "a plate's upper-case letters and digits"},
    VEHICLE: {"type": "string", "description": "the vehicle a plate is on (an objects label)"},
    NAME: {"type": "string", "description": "the known plate it reads as (mlapi plates add)"},
}
