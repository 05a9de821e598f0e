"""The quality gate: a face too small, too blurred, turned too far or found with too little
confidence is neither kept as an unknown face nor taken as a sample of a person. Each
refusal says why; passing faces get a 0..1 quality score that ranks a cluster's faces."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from mlapi.detectors.faceutil import aligned_crop, sharpness
from mlapi.images import Image
from mlapi.result import Detection
from mlapi.sightings.settings import FaceMemory

CROP = 112  # sharpness is measured on an aligned crop of this side (enroll's calibration)
PICTURE = 96  # the face picture kept (about 3 KB as JPEG), as the gallery keeps for samples
# Where each factor of the score saturates: a face this wide, this sharp, is as good as any.
FULL_WIDTH, FULL_SHARPNESS = 112.0, 200.0


@dataclass(frozen=True)
class Quality:
    score: float  # 0..1, for ranking a cluster's faces
    width: int
    sharpness: float
    turn: float | None  # degrees, or None: the detector gave no keypoints to tell
    confidence: float

    def refusal(self, gate: FaceMemory) -> str | None:
        """Why the gate refuses this face (the first reason), or None."""
        if self.width < gate.face_min_pixels:
            return f"the face is too small ({self.width} px wide, at least {gate.face_min_pixels})"
        if self.sharpness < gate.face_min_sharpness:
            return (
                f"the face is too blurred (sharpness {self.sharpness:.0f}, at least "
                f"{gate.face_min_sharpness:.0f})"
            )
        if self.turn is not None and self.turn > gate.face_max_turn:
            return (
                f"the face is turned too far ({self.turn:.0f}°, at most {gate.face_max_turn:.0f}°)"
            )
        if self.confidence < gate.face_min_score:
            return (
                f"the face was found with too little confidence ({self.confidence:.2f}, "
                f"at least {gate.face_min_score:.2f})"
            )
        return None


@dataclass(frozen=True)
class Seen:
    """What recognize keeps of a face for the memory of faces seen (Detection.memo)."""

    model: str
    embedding: np.ndarray  # L2-normalised
    quality: Quality
    picture: np.ndarray  # RGB, PICTURE × PICTURE


def turn(face: Detection) -> float | None:
    """How far the face is turned sideways, in degrees (0: facing the camera), from
    BlazeFace's six keypoints (eyes, nose, mouth, ears): the nose's offset between the ears.
    None when the detector gives no such keypoints."""
    if len(face.keypoints) < 6:
        return None
    (nx, ny), (rx, ry), (lx, ly) = face.keypoints[2], face.keypoints[4], face.keypoints[5]
    to_right, to_left = math.hypot(nx - rx, ny - ry), math.hypot(nx - lx, ny - ly)
    if to_right + to_left <= 0:
        return None
    lean = (to_right - to_left) / (to_right + to_left)  # -1..1: one ear hidden behind
    return math.degrees(math.asin(min(abs(lean), 1.0)))


def measure(image: Image, face: Detection) -> Quality:
    """The face's size, sharpness, turn and confidence, and the score they make."""
    width = face.box[2] - face.box[0]
    sharp = sharpness(aligned_crop(image, face, CROP))
    turned = turn(face)
    factors = (
        min(width / FULL_WIDTH, 1.0),
        min(sharp / FULL_SHARPNESS, 1.0),
        1.0 - (turned or 0.0) / 90.0,
        max(min(face.confidence, 1.0), 0.0),
    )
    score = math.prod(factors) ** (1 / len(factors))  # plain floats: a few µs per face
    return Quality(score, width, sharp, turned, face.confidence)


def picture(image: Image, face: Detection) -> np.ndarray:
    """The face as the gallery keeps it for a sample: upright, with some margin."""
    return aligned_crop(image, face, PICTURE, 1.3, False)
