"""Third-party detectors are discovered through a real installed entry point."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mlapi.engine import Engine
from mlapi.errors import MlapiError, OptionError, UnknownDetector
from mlapi.images import encode_jpeg
from mlapi.registry import discover
from mlapi.store import ModelCache

PLUGIN = '''
from dataclasses import dataclass, field
from mlapi.detectors.base import Detector, Options
from mlapi.result import Detection

@dataclass(frozen=True)
class BrightOptions(Options):
    threshold: int = field(default=128, metadata={"min": 0, "max": 255})

class Bright(Detector):
    """Reports the whole image as 'bright' when its mean exceeds a threshold."""
    name = "bright"
    task = "classification"
    needs = ("NEEDS",)
    Options = BrightOptions

    def detect(self, image, options, upstream):
        mean = float(image.pixels.mean())
        if mean <= options.threshold:
            return []
        return [Detection("bright", mean / 255, (0, 0, image.width, image.height), self.name,
                          attributes={"upstream": len(upstream["NEEDS"])})]
'''


def install_plugin(site: Path, name: str, needs: str = "objects") -> None:
    """Lay out a package and its dist-info exactly as pip would install them."""
    (site / f"{name}.py").write_text(PLUGIN.replace("NEEDS", needs))
    info = site / f"{name}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[mlapi.detectors]\nbright = {name}:Bright\n")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    sys.path.insert(0, str(tmp_path))
    yield tmp_path
    sys.path.remove(str(tmp_path))
    for mod in [m for m in sys.modules if m.startswith("mlapi_bright")]:
        del sys.modules[mod]


def test_installed_plugin_is_discovered_and_run(site: Path, store: ModelCache) -> None:
    install_plugin(site, "mlapi_bright_plugin")
    registry = discover()
    assert {"objects", "faces", "bright"} <= set(registry)
    with Engine(store, registry=registry) as engine:
        assert engine.plan(["bright"]) == ["objects", "bright"]
        white = encode_jpeg(np.full((64, 64, 3), 250, np.uint8))
        result = engine.detect(white, ["bright"], {"bright": {"threshold": "200"}})
        assert [d.label for d in result.detections] == ["bright"]  # needs are run, not shown
        assert result.detections[0].attributes == {"upstream": 0}
        with pytest.raises(OptionError, match="unknown option nope"):
            engine.detect(white, ["bright"], {"bright": {"nope": "1"}})


def test_duplicate_detector_names_are_refused(site: Path) -> None:
    install_plugin(site, "mlapi_bright_one")
    install_plugin(site, "mlapi_bright_two")
    with pytest.raises(MlapiError, match="two installed detectors are named 'bright'"):
        discover()


def test_unknown_model_lists_the_available_ones(engine: Engine) -> None:
    with pytest.raises(UnknownDetector, match=r"unknown detector 'cats' \(available: .*objects"):
        engine.plan(["cats"])
