"""A gallery of 30,000 samples (3,000 people; dlib's 128-d unit vectors, rounded as
`mlapi faces add` stores them) in PostgreSQL or a TinyDB file, and stand-in detectors that
find one face whose faceprint is one of those samples. Recognition itself, the gallery and
the stores are the real ones; only the networks (no models here) are stood in for. Used by
tests/test_loop_latency.py and bench/loop_latency.py."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import psycopg

from mlapi import attributes
from mlapi.detectors.base import Detector
from mlapi.detectors.recognize import Recognize
from mlapi.images import Image, encode_jpeg
from mlapi.result import Detection
from mlapi.stores import rules

SAMPLES, PER_PERSON = 30_000, 10
VECTORS = np.random.default_rng(31).normal(size=(SAMPLES, 128)).astype(np.float32)
VECTORS /= np.linalg.norm(VECTORS, axis=1, keepdims=True)
SOUGHT = 12_345  # the sample the stand-in faceprint returns
SOUGHT_NAME = f"person {SOUGHT // PER_PERSON}"
PHOTO = encode_jpeg(np.full((120, 160, 3), 128, np.uint8))


class OneFace(Detector):
    name = "faces"
    task = "faces"

    def detect(
        self, image: Image, options: Any, upstream: Mapping[str, list[Detection]]
    ) -> list[Detection]:
        return [Detection("face", 0.99, (20, 20, 80, 90), self.name)]


class KnownFaceprint(Detector):
    """The faceprint of sample SOUGHT, for every face."""

    name = "faceprint"
    task = "embedding"
    needs = ("faces",)
    refines = "faces"

    def detect(
        self, image: Image, options: Any, upstream: Mapping[str, list[Detection]]
    ) -> list[Detection]:
        vector = tuple(float(v) for v in VECTORS[SOUGHT])
        dlib = attributes.faceprinted("dlib")
        return [
            Detection(f.label, f.confidence, f.box, self.name, (), dlib, vector)
            for f in upstream["faces"]
        ]


REGISTRY: dict[str, type[Detector]] = {
    "faces": OneFace,
    "faceprint": KnownFaceprint,
    "recognize": Recognize,
}


def rows() -> list[tuple[str, str, str, float, str, list[float]]]:
    """(id, name, model, created, source, embedding) of each sample."""
    now = time.time()
    return [
        (secrets.token_hex(6), f"person {i // PER_PERSON}", "dlib", now + i * 1e-3, "photo",
         rules.stored_embedding(v))
        for i, v in enumerate(VECTORS)
    ]  # fmt: skip


def fill_database(url: str) -> None:
    """Into a database whose schema is made (open_stores did it)."""
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.executemany("INSERT INTO mlapi_samples VALUES (%s, %s, %s, %s, %s, %s)", rows())
        cursor.execute("UPDATE mlapi_gallery_version SET version = version + 1")


def write_file(folder: Path) -> None:
    """gallery.json as TinyDB writes it (json.dumps, keys sorted), made at once."""
    samples = {
        str(n): {"id": i, "name": p, "model": m, "created": c, "source": s, "embedding": e}
        for n, (i, p, m, c, s, e) in enumerate(rows(), 1)
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "gallery.json").write_text(json.dumps({"samples": samples}, sort_keys=True))
