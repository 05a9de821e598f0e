"""ZoneMinder's clients on a real server: pyzm's own gateway client (PyPI pyzm 2.5.6, as
zmeventnotification 7.x uses it) and the shapes zm_detect 5.7+ and 6.x parse."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from aiohttp import web
from pyzm.ml.remote import GatewayClient, GatewayModelError
from servers import LiveServer, Loopback

from mlapi.config import ServerConfig
from mlapi.engine import Engine
from mlapi.enroll import enroll
from mlapi.server import ENGINE
from mlapi.state.gallery import Gallery
from mlapi.store import ModelStore

PASSWORD = "zoneminder password"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.fixture(scope="module")
def server(store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("zm")
    config = ServerConfig(models=("objects",), allow_url_fetch=True, url_networks=LOOPBACK)
    with Engine(store, gallery=Gallery(data / "gallery.json")) as engine:
        live = LiveServer(engine, data, config)
        live.users.add("zm", PASSWORD)
        yield live
        live.stop()


def gateway(server: LiveServer) -> GatewayClient:
    return GatewayClient(f"{server.url}/api/v1", "zm", PASSWORD, timeout=60)


def test_pyzm_object_model_in_image_mode(server: LiveServer, photos: Path) -> None:
    frame = cv2.imread(str(photos / "object_detection_input.jpg"))  # pyzm sends BGR as PNG
    found = gateway(server).infer(frame, "object", "YOLO ONNX", min_confidence=0.4)
    labels = {d.label for d in found}
    assert {"person", "dog"} <= labels and labels & {"horse", "cow"}  # torn between the two
    assert all(d.model_name == "YOLO ONNX" and 0.4 <= d.confidence <= 1 for d in found)
    dog = next(d for d in found if d.label == "dog")
    assert dog.bbox.x1 < 120 and dog.bbox.x2 > 180  # pixels of the original frame


def test_pyzm_face_model_names_known_people(server: LiveServer, photos: Path) -> None:
    engine = server.app[ENGINE]  # the running server's own engine and gallery
    couple = (photos / "gender_detection_input.jpg").read_bytes()
    enroll(engine, engine.runtime.gallery, "Kumail", couple, "couple", largest=True)
    frame = cv2.imread(str(photos / "face_detection_input.jpg"))
    found = gateway(server).infer(frame, "face", "dlib face", min_confidence=0.5)
    names = [d.label for d in sorted(found, key=lambda d: d.bbox.x1)]
    assert names == ["unknown", "unknown", "Kumail", "unknown", "unknown"]
    engine.runtime.gallery.remove("Kumail")


def test_pyzm_model_the_server_cannot_run_is_skipped(server: LiveServer, photos: Path) -> None:
    frame = cv2.imread(str(photos / "object_detection_input.jpg"))
    with pytest.raises(GatewayModelError, match="type='alpr'"):
        gateway(server).infer(frame, "alpr", "plates")


@pytest.fixture(scope="module")
def zoneminder(photos: Path) -> Iterator[str]:
    """A ZoneMinder stand-in on loopback serving a frame at /zm/index.php?view=image."""

    async def image(request: web.Request) -> web.Response:
        if request.query.get("token") != "secret":
            return web.Response(status=401)
        return web.Response(body=(photos / "object_detection_input.jpg").read_bytes())

    server = Loopback([web.get("/zm/index.php", image)])
    yield server.url
    server.stop()


def test_pyzm_url_mode_reaches_only_allowed_networks(
    server: LiveServer, store: ModelStore, zoneminder: str, tmp_path: Path
) -> None:
    client = gateway(server)
    client.current_frame = {
        "url": f"{zoneminder}/zm/index.php?view=image&eid=1&fid=snapshot",
        "zm_auth": "token=secret",
        "verify_ssl": False,
    }
    found = client.infer(None, "object", "YOLO ONNX", min_confidence=0.4)
    assert "dog" in {d.label for d in found}
    # Without the operator's allow-list the same private address is refused.
    config = ServerConfig(models=("objects",), allow_url_fetch=True)
    with Engine(store) as engine:
        closed = LiveServer(engine, tmp_path, config)
        closed.users.add("zm", PASSWORD)
        try:
            other = gateway(closed)
            other.current_frame = client.current_frame
            with pytest.raises(GatewayModelError, match=r"fetch failed.*refused"):
                other.infer(None, "object", "YOLO ONNX")
        finally:
            closed.stop()


def test_zm_detect_shapes(server: LiveServer, photos: Path) -> None:
    token = server.token("zm", PASSWORD)
    data = (photos / "object_detection_input.jpg").read_bytes()
    seed = server.upload("/api/v1/detect/object", {"file": data}, token).json()
    assert all(item["label"] == item["type"] for item in seed)  # zm_detect 5.7+ reads label
    zm = server.upload(
        "/api/v1/detect/object?response_format=zm_detect", {"file": data}, token
    ).json()
    matched = zm["matched_data"]
    assert matched["image_dimensions"] == {"original": [424, 640], "resized": None}
    assert len(matched["boxes"]) == len(matched["labels"]) == len(matched["confidences"])
    assert matched["labels"] == [item["label"] for item in seed]
    assert all(0 < c <= 1 for c in matched["confidences"]) and zm["all_matches"] == [matched]
