"""Keyless LAN clients: CodeProject.AI's own client (PyPI codeproject-ai-api 0.1), which
has no way to send a key, works from a network the operator chose, and only there."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from codeprojectai.core import CodeProjectAIException, CodeProjectAIFace, CodeProjectAIObject
from servers import LiveServer

from mlapi.config import ServerConfig
from mlapi.engine import Engine
from mlapi.images import decode, encode_jpeg
from mlapi.store import ModelCache
from mlapi.stores.gallery import Gallery
from mlapi.web.state import ENGINE


def serve(store: ModelCache, folder: Path, **config: object) -> LiveServer:
    engine = Engine(store, gallery=Gallery(folder / "gallery.json"))
    return LiveServer(engine, folder, ServerConfig(models=("objects",), **config))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def lan(store: ModelCache, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = serve(
        store,
        tmp_path_factory.mktemp("lan"),
        keyless_networks=(ipaddress.ip_network("127.0.0.0/8"),),
        keyless_dialects=("deepstack",),
    )
    yield live
    live.stop()
    live.app[ENGINE].close()


def crop(photos: Path, name: str, x1: int, x2: int) -> bytes:
    return encode_jpeg(np.ascontiguousarray(decode((photos / name).read_bytes()).pixels[:, x1:x2]))


def test_codeproject_client_detects_from_the_lan(lan: LiveServer, photos: Path) -> None:
    client = CodeProjectAIObject(ip="127.0.0.1", port=lan.port, timeout=60)
    found = client.detect((photos / "object_detection_input.jpg").read_bytes())
    assert {"person", "dog"} <= {p["label"] for p in found}


def test_codeproject_client_names_no_stranger_at_its_threshold(
    lan: LiveServer, photos: Path
) -> None:
    faces = CodeProjectAIFace(ip="127.0.0.1", port=lan.port, timeout=60)  # sends 0.45
    assert "face added" in faces.register("Her", crop(photos, "gender_detection_input.jpg", 0, 400))
    five = faces.recognize((photos / "face_detection_input.jpg").read_bytes())
    assert len(five) == 5 and {p["userid"] for p in five} == {"unknown"}
    assert faces.get_registered_faces() == ["Her"]


def test_other_dialects_still_need_a_key(lan: LiveServer, photos: Path) -> None:
    data = (photos / "object_detection_input.jpg").read_bytes()
    answer = lan.call("POST", "/api/v1/detect", data, {"Content-Type": "image/jpeg"})
    assert answer.status == 401 and answer.json()["msg"] == "Missing Authorization Header"


def test_without_keyless_networks_the_client_is_refused(
    store: ModelCache, tmp_path: Path, photos: Path
) -> None:
    closed = serve(store, tmp_path)
    try:
        client = CodeProjectAIObject(ip="127.0.0.1", port=closed.port, timeout=60)
        with pytest.raises(CodeProjectAIException, match="401"):
            client.detect((photos / "object_detection_input.jpg").read_bytes())
    finally:
        closed.stop()
        closed.app[ENGINE].close()
