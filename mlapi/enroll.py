"""Adding face samples to the gallery, refusing photos that would make poor samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mlapi.detectors.faceutil import aligned_crop
from mlapi.engine import Engine, Pixels
from mlapi.errors import DuplicateSample, GalleryError, MlapiError, NoFaceFound
from mlapi.images import encode_jpeg
from mlapi.inputs import IMAGE_SUFFIXES
from mlapi.sightings.quality import measure
from mlapi.similarity import MATCH_AT, normalise, similarity
from mlapi.stores import Faces

# A new sample this close (cosine) to one the person already has is the same photo again:
# an identical photo gives an identical faceprint, and it would add nothing but weight.
SAME_SAMPLE_AT = 0.9999
THUMBNAIL_PIXELS = 96  # the face picture kept with each sample (about 3 KB), for the console


@dataclass(frozen=True)
class Enrolled:
    name: str
    sample_id: str
    box: tuple[int, int, int, int]
    faces_found: int = 1
    # Someone else this face already matches (name, similarity): recognition names neither
    # while both hold it, so the caller should say so.
    also_matches: tuple[str, float] | None = None

    @property
    def warning(self) -> str | None:
        if self.also_matches is None:
            return None
        other, score = self.also_matches
        return (
            f"this face also matches {other!r} (similarity {score:.2f}); while both hold it, "
            f"recognition names neither: remove one with mlapi faces remove"
        )


def enroll(
    engine: Engine,
    gallery: Faces,
    name: str,
    data: bytes,
    source: str = "",
    model: str = "dlib",
    largest: bool = False,
) -> Enrolled:
    """Add the one face in `data` as a sample of `name`; GalleryError says why not.

    `largest`: with several faces, take the largest (DeepStack's register does) instead of
    refusing the photo.
    """
    plan = engine.make_plan(["faceprint"], {"faceprint": {"model": model}})
    pixels = Pixels(data, engine.config.max_pixels)
    faces = engine.run_here(pixels, plan).detections
    image = pixels.at(None)  # full resolution, for the quality gate
    if not faces:
        raise NoFaceFound("no face found in the photo")
    if len(faces) > 1 and not largest:
        raise GalleryError(f"{len(faces)} faces found; a sample must show exactly one person")
    face = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    # The gate unknown faces pass to be kept (mlapi.sightings.quality): too small (narrower
    # faces carry too little detail for a faceprint), blurred, turned or doubtful.
    refused = measure(image, face).refusal(engine.runtime.face_gate)
    if refused:
        raise GalleryError(refused)
    embedding = np.asarray(face.embedding, np.float32)
    ranking = gallery.ranking(normalise(embedding), model)
    own = [m for m in ranking if m.name == name.strip()]
    if own and own[0].similarity >= SAME_SAMPLE_AT:
        raise DuplicateSample(f"{name.strip()} already has a sample identical to this face")
    others = [m for m in ranking if m.name != name.strip()]
    closest = similarity(others[0].similarity, model) if others else 0.0
    also = (others[0].name, round(closest, 4)) if closest >= MATCH_AT else None
    thumbnail = encode_jpeg(aligned_crop(image, face, THUMBNAIL_PIXELS, 1.3, False), 85)
    sample_id = gallery.add(name, embedding, model, source, thumbnail)
    return Enrolled(name, sample_id, face.box, len(faces), also)


ALREADY = "already in the gallery (a sample of this person from this file); skipped"
NOT_AN_IMAGE = "not an image file type; skipped"


def import_folder(
    engine: Engine, gallery: Faces, folder: Path
) -> list[tuple[Path, Enrolled | str]]:
    """mlapi 2.x's layout: one sub-folder per person holding their photos."""
    if not folder.is_dir():
        raise GalleryError(f"{folder} is not a directory")
    outcomes: list[tuple[Path, Enrolled | str]] = []
    known = {(s.name, s.source) for s in gallery.samples()}  # a second import adds nothing
    for person in sorted(p for p in folder.iterdir() if p.is_dir()):
        for photo in sorted(p for p in person.iterdir() if p.is_file()):
            if photo.suffix.lower() not in IMAGE_SUFFIXES:  # a readme.txt, as `detect` does
                outcomes.append((photo, NOT_AN_IMAGE))
                continue
            if (person.name, photo.name) in known:
                outcomes.append((photo, ALREADY))
                continue
            try:
                outcomes.append(
                    (
                        photo,
                        enroll(engine, gallery, person.name, photo.read_bytes(), source=photo.name),
                    )
                )
            except (MlapiError, OSError) as exc:  # one bad photo must not stop the import
                outcomes.append((photo, getattr(exc, "message", str(exc))))
    return outcomes
