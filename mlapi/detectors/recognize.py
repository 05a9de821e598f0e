"""`recognize`: who each face is, from the gallery of known people (`mlapi faces add`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from mlapi import attributes
from mlapi.detectors.base import Detector, Options
from mlapi.images import Image
from mlapi.result import Detection
from mlapi.sightings.quality import Seen, measure, picture
from mlapi.similarity import MARGIN, MATCH_AT, normalise, similarity


@dataclass(frozen=True)
class RecognizeOptions(Options):
    # On the calibrated 0..1 similarity of `mlapi.similarity`.
    threshold: float = field(default=MATCH_AT, metadata={"min": 0.0, "max": 1.0})


class Recognize(Detector):
    name = "recognize"
    task = "recognition"
    description = "identity of each face from the gallery, or 'unknown' below the threshold"
    needs = ("faces", "faceprint")
    refines = "faces"
    min_side = None
    Options = RecognizeOptions

    def load(self) -> None:
        pass  # the gallery is read as each request runs: the server may give the engine its own

    def detect(
        self, image: Image, options: RecognizeOptions, upstream: Mapping[str, list[Detection]]
    ) -> list[Detection]:
        found = []
        for face in upstream["faceprint"]:
            model = attributes.faceprint_model(face)
            vector = normalise(np.asarray(face.embedding, np.float32))  # whatever was asked
            match = self.context.gallery.match(vector, model)
            score = similarity(match.similarity, model) if match else 0.0
            runner_up = (
                similarity(match.runner_up, model) if match and match.runner_up is not None else 0
            )
            # A name needs the threshold and a lead over everyone else.
            known = match is not None and score >= options.threshold and score - runner_up >= MARGIN
            name = match.name if match is not None and known else attributes.UNKNOWN
            attrs = attributes.recognised(name, score)
            memo = None
            if self.context.remember_faces:  # the picture and quality, for mlapi.sightings
                memo = Seen(model, vector, measure(image, face), picture(image, face))
            found.append(
                Detection(
                    face.label,
                    face.confidence,
                    face.box,
                    self.name,
                    face.keypoints,
                    attrs,
                    memo=memo,
                )
            )
        return found
