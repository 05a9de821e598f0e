"""The DeepStack / CodeProject.AI dialect on a real server, by hand and by a real client."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import services
from deepstack import core as ds
from helpers import run_mlapi
from servers import Answer, LiveServer

from mlapi.config import ServerConfig
from mlapi.detectors.coco import COCO_LABELS
from mlapi.engine import Engine
from mlapi.images import decode, encode_jpeg
from mlapi.store import ModelCache
from mlapi.stores.gallery import Gallery
from mlapi.web.state import ENGINE


@pytest.fixture(scope="module")
def server(store: ModelCache, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("data")
    with Engine(store, gallery=Gallery(data / "gallery.json")) as engine:
        live = LiveServer(engine, data)
        live.users.add("hass", "home assistant")
        live.key = live.users.create_key("hass", "deepstack")
        yield live
        live.stop()


def post(
    server: LiveServer, path: str, images: dict[str, bytes] | None = None, **fields: str
) -> Answer:
    fields.setdefault("api_key", server.key)
    return server.upload(path, images or {}, fields=fields)


def crop(photos: Path, name: str, x1: int, x2: int) -> bytes:
    return encode_jpeg(np.ascontiguousarray(decode((photos / name).read_bytes()).pixels[:, x1:x2]))


def test_detection_is_sorted_coco_and_thresholded(server: LiveServer, photos: Path) -> None:
    answer = post(
        server,
        "/v1/vision/detection",
        {"image": (photos / "face_detection_input.jpg").read_bytes()},
    )
    body = answer.json()
    assert answer.status == 200 and body["success"] is True and body["duration"] == 0
    confidences = [p["confidence"] for p in body["predictions"]]
    assert confidences == sorted(confidences, reverse=True) and min(confidences) >= 0.40
    assert all(p["label"] in COCO_LABELS for p in body["predictions"])
    assert [p["label"] for p in body["predictions"]].count("person") == 5
    assert set(body["predictions"][0]) == {
        "label",
        "confidence",
        "x_min",
        "y_min",
        "x_max",
        "y_max",
    }


def test_at_most_twenty_predictions_unless_asked(server: LiveServer, photos: Path) -> None:
    data = (photos / "face_detection_input.jpg").read_bytes()
    low = post(server, "/v1/vision/detection", {"image": data}, min_confidence="0.01").json()
    assert len(low["predictions"]) == 20
    more = post(
        server, "/v1/vision/detection", {"image": data}, min_confidence="0.01", max_predictions="50"
    ).json()
    assert len(more["predictions"]) > 20


@pytest.mark.parametrize(
    ("fields", "status", "error"),
    [
        ({"min_confidence": "abc"}, 400, "Invalid value for min_confidence"),
        ({"min_confidence": "1.5"}, 400, "min_confidence cannot be greater than 1"),
        ({"api_key": "wrong"}, 401, "Incorrect api key"),
        ({"api_key": ""}, 401, "Incorrect api key"),
    ],
)
def test_errors_in_deepstack_shape(
    server: LiveServer, photos: Path, fields: dict[str, str], status: int, error: str
) -> None:
    answer = post(
        server,
        "/v1/vision/detection",
        {"image": (photos / "object_detection_input.jpg").read_bytes()},
        **fields,
    )
    assert answer.status == status
    assert answer.json() == {"success": False, "error": error, "duration": 0}


def test_bad_images(server: LiveServer) -> None:
    none = post(server, "/v1/vision/detection")
    assert none.status == 400 and none.json()["error"] == "No valid image file found"
    text = post(server, "/v1/vision/detection", {"image": b"not an image at all"})
    assert text.status == 400 and "not an image" in text.json()["error"]


def test_custom_models(server: LiveServer, photos: Path) -> None:
    listed = post(server, "/v1/vision/custom/list").json()
    assert listed["success"] and {"objects", "yolo"} <= set(listed["models"])
    found = post(
        server,
        "/v1/vision/custom/objects",
        {"image": (photos / "object_detection_input.jpg").read_bytes()},
    )
    labels = {p["label"] for p in found.json()["predictions"]}
    assert "dog" in labels and labels & {"horse", "cow"}  # the model is torn between the two
    missing = post(server, "/v1/vision/custom/unicorns", {"image": b"x"})
    assert missing.status == 404 and missing.json()["success"] is False


def test_faces_with_and_without_trailing_slash(server: LiveServer, photos: Path) -> None:
    data = (photos / "face_detection_input.jpg").read_bytes()
    for path in ("/v1/vision/face", "/v1/vision/face/"):
        body = post(server, path, {"image": data}).json()
        assert len(body["predictions"]) == 5 and all(
            p["confidence"] >= 0.55 for p in body["predictions"]
        )


def test_register_recognize_list_delete_round_trip(server: LiveServer, photos: Path) -> None:
    man = crop(photos, "gender_detection_input.jpg", 420, 800)
    woman = crop(photos, "gender_detection_input.jpg", 0, 400)
    added = post(server, "/v1/vision/face/register", {"image": man}, userid="Kumail")
    assert added.json() == {"success": True, "message": "face added", "duration": 0}
    # The very photo again is refused in DeepStack's shape; another photo is appended.
    same = post(server, "/v1/vision/face/register", {"image": man}, userid="Kumail")
    assert same.status == 409 and same.json()["success"] is False
    assert "already has a sample identical" in same.json()["error"]
    wider = crop(photos, "gender_detection_input.jpg", 380, 800)
    again = post(
        server, "/v1/vision/face/register", {"image1": wider, "image2": man}, userid="Kumail"
    )
    assert again.json()["message"] == "face updated"
    kept = [s for s in server.app[ENGINE].runtime.gallery.samples() if s.name == "Kumail"]
    assert len(kept) == 2  # samples are appended, never replaced
    post(server, "/v1/vision/face/register", {"image": woman}, userid="Emily")
    assert post(server, "/v1/vision/face/list").json()["faces"] == ["Emily", "Kumail"]
    # The same face under another spelling is added, and the answer says whose it also is.
    twin = post(server, "/v1/vision/face/register", {"image": man}, userid="kumail n")
    assert twin.json()["success"] is True and "also matches 'Kumail'" in twin.json()["warning"]
    post(server, "/v1/vision/face/delete", userid="kumail n")

    five = post(
        server,
        "/v1/vision/face/recognize",
        {"image": (photos / "face_detection_input.jpg").read_bytes()},
    ).json()
    named = [p for p in five["predictions"] if p["userid"] != "unknown"]
    assert [p["userid"] for p in named] == ["Kumail"] and named[0]["confidence"] >= 0.67
    assert 700 < named[0]["x_min"] < 900  # the middle man
    assert sum(p["userid"] == "unknown" and p["confidence"] == 0 for p in five["predictions"]) == 4
    assert five["predictions"][0]["userid"] == "Kumail"  # sorted by confidence

    assert post(server, "/v1/vision/face/delete", userid="Kumail").json() == {
        "success": True,
        "duration": 0,
    }
    assert post(server, "/v1/vision/face/list").json()["faces"] == ["Emily"]
    after = post(
        server,
        "/v1/vision/face/recognize",
        {"image": (photos / "face_detection_input.jpg").read_bytes()},
    ).json()
    assert {p["userid"] for p in after["predictions"]} == {"unknown"}
    post(server, "/v1/vision/face/delete", userid="Emily")


@pytest.mark.parametrize(
    ("fields", "images", "error"),
    [
        ({}, {"image": "man"}, "userid not specified"),
        ({"userid": "X"}, {}, "No valid image file found"),
        ({"userid": "X"}, {"image": "horse"}, "no face detected"),
    ],
)
def test_register_errors(
    server: LiveServer, photos: Path, fields: dict[str, str], images: dict[str, str], error: str
) -> None:
    pictures = {
        "man": crop(photos, "gender_detection_input.jpg", 420, 800),
        "horse": crop(photos, "object_detection_input.jpg", 400, 640),
        "couple": (photos / "gender_detection_input.jpg").read_bytes(),
    }
    answer = post(
        server, "/v1/vision/face/register", {k: pictures[v] for k, v in images.items()}, **fields
    )
    assert answer.status == 400 and error in answer.json()["error"]
    assert "X" not in post(server, "/v1/vision/face/list").json()["faces"]


def test_register_with_two_faces_enrols_the_larger(server: LiveServer, photos: Path) -> None:
    couple = (photos / "gender_detection_input.jpg").read_bytes()  # his face is the larger
    added = post(server, "/v1/vision/face/register", {"image": couple}, userid="Larger")
    assert added.status == 200
    assert added.json()["message"] == "face added (the largest of 2 faces in the photo)"
    try:
        for part, expected in (((420, 800), "Larger"), ((0, 400), "unknown")):
            found = post(
                server,
                "/v1/vision/face/recognize",
                {"image": crop(photos, "gender_detection_input.jpg", *part)},
                min_confidence="0.45",
            ).json()["predictions"]
            assert [p["userid"] for p in found] == [expected]
    finally:
        post(server, "/v1/vision/face/delete", userid="Larger")


def test_match_two_images(server: LiveServer, photos: Path) -> None:
    man = crop(photos, "gender_detection_input.jpg", 420, 800)
    middle = crop(photos, "face_detection_input.jpg", 700, 1050)
    woman = crop(photos, "gender_detection_input.jpg", 0, 400)
    same = post(server, "/v1/vision/face/match", {"image1": man, "image2": middle}).json()
    other = post(server, "/v1/vision/face/match", {"image1": woman, "image2": middle}).json()
    assert same["similarity"] >= 0.67 > other["similarity"]
    one = post(server, "/v1/vision/face/match", {"image1": man})
    assert one.status == 400 and "two images" in one.json()["error"]


def test_ping_and_unavailable_features(server: LiveServer, photos: Path) -> None:
    assert server.call("GET", "/v1/server/status/ping").json() == {"success": True, "duration": 0}
    scene = post(
        server, "/v1/vision/scene", {"image": (photos / "object_detection_input.jpg").read_bytes()}
    )
    assert scene.status == 403 and scene.json()["success"] is False


def test_anonymous_only_when_enabled(store: ModelCache, tmp_path: Path, photos: Path) -> None:
    with Engine(store) as engine:
        live = LiveServer(engine, tmp_path, ServerConfig(models=("objects",), allow_anonymous=True))
        try:
            answer = live.upload(
                "/v1/vision/detection",
                {"image": (photos / "object_detection_input.jpg").read_bytes()},
            )
            assert answer.status == 200 and answer.json()["predictions"]
        finally:
            live.stop()


def test_the_home_assistant_client_library_works_unmodified(
    server: LiveServer, photos: Path
) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    objects = ds.DeepstackObject("127.0.0.1", port, api_key=server.key, min_confidence=0.4)
    predictions = objects.detect((photos / "object_detection_input.jpg").read_bytes())
    assert {"person", "dog"} <= set(ds.get_objects(predictions))
    assert ds.get_objects_summary(predictions)["dog"] == 1

    # 0.67 is DeepStack's own recognition default; the library's 0.45 would accept look-alikes.
    faces = ds.DeepstackFace("127.0.0.1", port, api_key=server.key, min_confidence=0.67)
    assert len(faces.detect((photos / "face_detection_input.jpg").read_bytes())) == 5
    assert (
        faces.register("Kumail", crop(photos, "gender_detection_input.jpg", 420, 800))
        == "face added"
    )
    recognised = ds.get_recognized_faces(
        faces.recognize((photos / "face_detection_input.jpg").read_bytes())
    )
    assert list(recognised) == ["Kumail"] and recognised["Kumail"] >= 67
    assert (
        "Kumail"
        in ds.get_stored_faces(f"{server.url}/v1/vision/face/list", server.key, 10)["faces"]
    )

    with pytest.raises(ds.DeepstackException, match="401"):
        ds.DeepstackObject("127.0.0.1", port, api_key="wrong").detect(b"\xff\xd8\xff")
    post(server, "/v1/vision/face/delete", userid="Kumail")


def test_server_sees_people_added_by_the_cli_without_a_restart(
    server: LiveServer, photos: Path, tmp_path: Path
) -> None:
    man = tmp_path / "man.jpg"
    man.write_bytes(crop(photos, "gender_detection_input.jpg", 420, 800))
    data_dir = server.data_dir  # the gallery of the running server
    added = run_mlapi(["faces", "add", "Kumail", str(man)], MLAPI_DATA_DIR=str(data_dir))
    assert added.returncode == 0, added.stderr
    five = (photos / "face_detection_input.jpg").read_bytes()
    found = post(server, "/v1/vision/face/recognize", {"image": five}).json()["predictions"]
    assert [p["userid"] for p in found if p["userid"] != "unknown"] == ["Kumail"]
    removed = run_mlapi(["faces", "remove", "Kumail"], MLAPI_DATA_DIR=str(data_dir))
    assert removed.returncode == 0
    found = post(server, "/v1/vision/face/recognize", {"image": five}).json()["predictions"]
    assert {p["userid"] for p in found} == {"unknown"}


DOUBLE_TAKE = Path(__file__).parent / "clients" / "double-take"


@pytest.fixture(scope="module")
def double_take(store: ModelCache) -> Path:
    """node_modules for Double Take 1.13.1's DeepStack module: its axios and form-data, from
    npm, installed once into the cache."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        services.missing("Node.js and npm")
    modules = store.root / "clients" / "double-take-1.13.1"
    if not (modules / "node_modules" / "axios").exists():
        modules.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(modules),
             "axios@0.27.2", "form-data@4.0.0"],
            check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    return modules / "node_modules"


def double_take_calls(server: LiveServer, modules: Path, key: str, *args: str) -> dict[str, Any]:
    env = dict(os.environ, NODE_PATH=str(modules), DEEPSTACK_URL=server.url, DEEPSTACK_KEY=key)
    done = subprocess.run(
        ["node", str(DOUBLE_TAKE / "drive.js"), *args],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    answer: dict[str, Any] = json.loads(done.stdout)
    return answer


def test_double_takes_own_module_trains_and_recognises_with_a_key(
    server: LiveServer, double_take: Path, photos: Path, tmp_path: Path
) -> None:
    """Double Take appends api_key after the image: the key is checked once the form is in
    (nothing is decoded before), and everything works as with the key first."""
    man = tmp_path / "man.jpg"
    man.write_bytes(crop(photos, "gender_detection_input.jpg", 420, 800))
    couple = tmp_path / "couple.jpg"
    couple.write_bytes((photos / "gender_detection_input.jpg").read_bytes())
    trained = double_take_calls(server, double_take, server.key, "train", "Kumail", str(man))
    assert trained["status"] == 200 and trained["data"]["success"] is True
    try:
        found = double_take_calls(server, double_take, server.key, "recognize", str(couple))
        assert found["status"] == 200
        named = [n for n in found["normalized"] if n["name"] == "kumail"]
        assert len(named) == 1 and named[0]["match"] is True
        wrong = double_take_calls(server, double_take, "mlk_wrong", "train", "X", str(man))
        assert wrong["status"] == 401 and wrong["data"]["error"] == "Incorrect api key"
    finally:
        removed = double_take_calls(server, double_take, server.key, "remove", "Kumail")
    assert removed["status"] == 200 and removed["data"]["success"] is True
