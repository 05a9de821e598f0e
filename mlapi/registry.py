"""Which detectors exist: installed plugins (entry points) and the user's imported models.

The model store only says what it holds; this module makes detector classes of it.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from mlapi.detectors.base import Detector
from mlapi.detectors.imported import imported_detectors
from mlapi.errors import MlapiError
from mlapi.store import ModelCache

ENTRY_POINT_GROUP = "mlapi.detectors"


def discover(group: str = ENTRY_POINT_GROUP) -> dict[str, type[Detector]]:
    """Detector classes from installed entry points; a duplicate name is an error."""
    found: dict[str, type[Detector]] = {}
    for ep in entry_points(group=group):
        if ep.name in found:
            raise MlapiError(f"two installed detectors are named {ep.name!r}")
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Detector)):
            raise MlapiError(f"entry point {ep.name!r} ({ep.value}) is not a Detector class")
        if getattr(cls, "name", ep.name) != ep.name:
            raise MlapiError(f"entry point {ep.name!r} points at detector {cls.name!r}")
        found[ep.name] = cls
    return found


def installed(store: ModelCache) -> dict[str, type[Detector]]:
    """Imported models, then installed detectors (a plugin's name wins)."""
    return {**imported_detectors(*store.detector_manifests()), **discover()}
