"""The memory of faces seen, as settings: whether it is on, what it keeps and for how long,
and the quality gate. `mlapi serve` offers each as an option (see mlapi.config.setting);
the other commands read the same environment variables (`from_env`). Nothing heavy here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlapi.config import from_environment, setting

if TYPE_CHECKING:
    from mlapi.stores import Retention


@dataclass(frozen=True)
class FaceMemory:
    no_face_memory: bool = setting(
        False,
        help="Keep no sightings of the faces recognition sees (unknown faces to name later, "
        "and each person's history); what was kept stays until `mlapi faces unknown forget "
        "--all`.",
    )
    sightings_days: float = setting(
        30.0, help="Days a face sighting is kept.", low=0.01,
        high=36_500,
    )  # fmt: skip
    sightings_max: int = setting(
        10_000,
        help="Face sightings kept at most (known and unknown); the oldest go first.",
        low=1,
        high=10_000_000,
    )
    sightings_interval: float = setting(
        10.0,
        help="Seconds before a source's sighting of the same person (or group of unknown "
        "faces) is kept again; 0 keeps every one.",
        low=0,
        high=86_400,
    )
    face_min_pixels: int = setting(
        48,
        help="Narrowest face (pixels) kept as unknown or taken as a sample.",
        low=8,
        high=4096,
    )
    face_min_sharpness: float = setting(
        25.0,
        help="Least sharpness (variance of the Laplacian of a 112 px face crop) of a face "
        "kept as unknown or taken as a sample.",
        low=0,
        high=10_000,
    )
    # bench/sightings.py on the public photos: at 50 a portrait turned about 30° by eye
    # (the estimate reads 52) was refused; profiles read 75-90.
    face_max_turn: float = setting(
        60.0,
        help="Most a face may be turned away (degrees as estimated from the detector's "
        "keypoints: a face turned about 30° reads about 50, a profile 90) to be kept as "
        "unknown or taken as a sample.",
        low=0,
        high=90,
    )
    # At 0.6 three clear faces of the public photos were refused (0.51-0.58).
    face_min_score: float = setting(
        0.5,
        help="Least face-detection confidence of a face kept as unknown or taken as a sample.",
        low=0,
        high=1,
    )

    @classmethod
    def from_env(cls) -> FaceMemory:
        return from_environment(cls)

    def retention(self) -> Retention:
        """What the stores keep: the settings' bounds, and unknown faces joining a cluster
        where recognition would name them the same person."""
        from mlapi.similarity import MATCH_AT
        from mlapi.stores import Retention

        return Retention(self.sightings_days, self.sightings_max, self.sightings_interval, MATCH_AT)
