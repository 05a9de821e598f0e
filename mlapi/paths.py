"""Where mlapi keeps things, and the environment variables that move each place.

- cache (`MLAPI_CACHE_DIR`): models and sample photos, safe to delete;
- bundled models (`MLAPI_BUNDLED_MODELS`, `:`-separated): read-only folders searched after
  the cache, and a binary's own `models` folder;
- data (`MLAPI_DATA_DIR`): users, API keys, the token secret, the face gallery (and its
  samples' face pictures), failed logins, signed-in console browsers;
- config (`MLAPI_CONFIG_DIR`): tokens saved by `mlapi login`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs

CACHE_ENV = "MLAPI_CACHE_DIR"
BUNDLED_ENV = "MLAPI_BUNDLED_MODELS"
DATA_ENV = "MLAPI_DATA_DIR"
CONFIG_ENV = "MLAPI_CONFIG_DIR"


def cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("mlapi"))


def bundled_dirs() -> list[Path]:
    """Read-only model folders: $MLAPI_BUNDLED_MODELS, then the binary's own `models`."""
    found = [Path(p) for p in os.environ.get(BUNDLED_ENV, "").split(os.pathsep) if p]
    inside = getattr(sys, "_MEIPASS", None)  # set by PyInstaller's bootloader
    if inside:
        found.append(Path(inside) / "models")
    return found


def data_dir() -> Path:
    return Path(os.environ.get(DATA_ENV) or platformdirs.user_data_dir("mlapi"))


def config_dir() -> Path:
    return Path(os.environ.get(CONFIG_ENV) or platformdirs.user_config_dir("mlapi"))
