"""DOODS on a real server through Home Assistant's own client (PyPI pydoods 1.0.2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pydoods import PyDOODS
from servers import LiveServer

from mlapi.detectors.coco import COCO_LABELS
from mlapi.engine import Engine
from mlapi.store import ModelCache


@pytest.fixture(scope="module")
def server(store: ModelCache, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with Engine(store) as engine:
        live = LiveServer(engine, tmp_path_factory.mktemp("doods"))
        live.users.add("hass", "home assistant doods")
        live.key = live.users.create_key("hass", "doods")
        yield live
        live.stop()


def client(server: LiveServer) -> PyDOODS:
    return PyDOODS(server.url, auth_key=server.key, timeout=60)


def test_detectors_list_the_default_with_coco_labels(server: LiveServer) -> None:
    found = client(server).get_detectors()["detectors"]
    default = next(d for d in found if d["name"] == "default")
    assert default["labels"] == list(COCO_LABELS) and default["width"] > 0


def test_detect_with_per_label_and_wildcard_thresholds(server: LiveServer, photos: Path) -> None:
    image = (photos / "object_detection_input.jpg").read_bytes()
    answer = client(server).detect(image, {"dog": 50}, id="cam1")
    assert answer["id"] == "cam1" and "error" not in answer  # any error key is a failure in HA
    assert [d["label"] for d in answer["detections"]] == ["dog"]
    dog = answer["detections"][0]
    assert 50 <= dog["confidence"] <= 100
    assert 0.05 < dog["left"] < 0.2 < 0.3 < dog["right"] < 0.4 and dog["top"] < dog["bottom"] <= 1
    everything = client(server).detect(image, {"*": 40})["detections"]
    assert {"person", "dog"} <= {d["label"] for d in everything}
    assert all(d["confidence"] >= 40 for d in everything)


def test_wrong_key_and_bad_bodies(server: LiveServer) -> None:
    with pytest.raises(requests.HTTPError, match="401"):
        PyDOODS(server.url, auth_key="mlk_nope_nope", timeout=10)
    headers = {"doods-auth-key": server.key}
    bad = requests.post(f"{server.url}/detect", json={"data": "%%%"}, headers=headers, timeout=10)
    assert bad.status_code == 400 and "base64" in bad.json()["error"]
    unknown = requests.post(
        f"{server.url}/detect",
        json={"data": "aGVsbG8=", "detector_name": "tensorflow"},
        headers=headers,
        timeout=10,
    )
    assert unknown.status_code == 400 and "no detector named" in unknown.json()["error"]
