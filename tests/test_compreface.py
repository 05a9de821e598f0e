"""CompreFace's wire shapes on a real server, as Double Take's CompreFace detector sends
them (x-api-key, multipart `file`, query parameters), and compreface-sdk's own code for
examples and subjects."""

from __future__ import annotations

import importlib
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from servers import LiveServer

from mlapi.engine import Engine
from mlapi.images import decode, encode_jpeg
from mlapi.store import ModelCache
from mlapi.store.catalog import Source
from mlapi.store.sources import fetch_package
from mlapi.stores.gallery import Gallery


@pytest.fixture(scope="module")
def server(store: ModelCache, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("compreface")
    with Engine(store, gallery=Gallery(data / "gallery.json")) as engine:
        live = LiveServer(engine, data)
        live.users.add("dt", "double take password")
        live.key = live.users.create_key("dt", "double-take")
        yield live
        live.stop()


def call(
    server: LiveServer, method: str, path: str, image: bytes | None = None, **params: str
) -> requests.Response:
    files = {"file": ("image.jpg", image, "image/jpeg")} if image is not None else None
    headers = {"x-api-key": server.key}
    return requests.request(
        method, server.url + path, params=params, files=files, headers=headers, timeout=60
    )


def crop(photos: Path, name: str, x1: int, x2: int) -> bytes:
    return encode_jpeg(np.ascontiguousarray(decode((photos / name).read_bytes()).pixels[:, x1:x2]))


def test_double_take_train_recognize_and_forget(server: LiveServer, photos: Path) -> None:
    couple = (photos / "gender_detection_input.jpg").read_bytes()
    empty = call(server, "POST", "/api/v1/recognition/recognize", couple).json()["result"]
    assert len(empty) == 2 and all(r["subjects"] == [] for r in empty)  # nobody enrolled yet
    man = crop(photos, "gender_detection_input.jpg", 420, 800)
    added = call(server, "POST", "/api/v1/recognition/faces", man, subject="kumail")
    assert added.status_code == 200 and added.json()["subject"] == "kumail"
    image_id = added.json()["image_id"]
    listed = call(server, "GET", "/api/v1/recognition/faces").json()
    assert listed["faces"] == [{"image_id": image_id, "subject": "kumail"}]
    assert listed["total_elements"] == 1 and listed["page_number"] == 0
    assert call(server, "GET", "/api/v1/recognition/subjects").json() == {"subjects": ["kumail"]}

    five = (photos / "face_detection_input.jpg").read_bytes()
    answer = call(
        server,
        "POST",
        "/api/v1/recognition/recognize",
        five,
        face_plugins="undefined",  # what Double Take sends when no plugin is set
        det_prob_threshold="0.8",
        limit="0",
        prediction_count="1",
        status="true",
    )
    assert answer.status_code == 200
    result = sorted(answer.json()["result"], key=lambda r: r["box"]["x_min"])
    assert len(result) == 5  # every real face passes Double Take's 0.8
    assert all(r["box"]["probability"] >= 0.8 and "execution_time" in r for r in result)
    scores = [r["subjects"][0]["similarity"] for r in result]
    assert result[2]["subjects"][0]["subject"] == "kumail" and scores[2] >= 0.6  # a match
    assert max(scores[:2] + scores[3:]) < 0.4  # Double Take names nobody else

    deleted = call(server, "DELETE", "/api/v1/recognition/faces", subject="kumail").json()
    assert deleted == {"deleted": 1}
    assert call(server, "GET", "/api/v1/recognition/subjects").json() == {"subjects": []}


def test_plugins_no_face_and_errors(server: LiveServer, photos: Path) -> None:
    couple = (photos / "gender_detection_input.jpg").read_bytes()
    found = call(
        server, "POST", "/api/v1/detection/detect", couple, face_plugins="age,gender"
    ).json()["result"]
    genders = [r["gender"]["value"] for r in sorted(found, key=lambda r: r["box"]["x_min"])]
    assert genders == ["female", "male"] and all(r["age"]["low"] < r["age"]["high"] for r in found)
    field = crop(photos, "object_detection_input.jpg", 400, 640)  # the horse: no face
    none = call(server, "POST", "/api/v1/recognition/recognize", field)
    assert none.status_code == 400
    assert none.json() == {"message": "No face is found in the given image", "code": 28}
    wrong = requests.post(
        server.url + "/api/v1/recognition/recognize",
        files={"file": couple},
        headers={"x-api-key": "mlk_nope_nope"},
        timeout=30,
    )
    assert wrong.status_code == 401 and set(wrong.json()) == {"message", "code"}
    bad = call(server, "POST", "/api/v1/recognition/recognize", couple, det_prob_threshold="2")
    assert bad.status_code == 400 and "det_prob_threshold" in bad.json()["message"]


def test_verify_compares_two_photos(server: LiveServer, photos: Path) -> None:
    man = crop(photos, "gender_detection_input.jpg", 420, 800)
    five = (photos / "face_detection_input.jpg").read_bytes()
    answer = requests.post(
        server.url + "/api/v1/verification/verify",
        files={"source_image": man, "target_image": five},
        headers={"x-api-key": server.key},
        timeout=60,
    ).json()["result"][0]
    best = answer["face_matches"][0]
    assert best["similarity"] >= 0.67 > answer["face_matches"][1]["similarity"]
    assert 600 < best["box"]["x_min"] < 1100  # the middle man of five


@pytest.fixture(scope="module")
def compreface_sdk(store: ModelCache, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """compreface-sdk 0.6.0 itself, from PyPI (checksummed, fetched once into the cache).
    It pins requests-toolbelt 0.9.1, which does not import with urllib3 2: the 1.0.0 wheel
    beside it is the one change, and its API is the same."""
    folder = tmp_path_factory.mktemp("compreface-sdk")
    for source in (
        Source("pypi", "compreface-sdk", "0.6.0", COMPREFACE_SDK_SHA256),
        Source("pypi", "requests-toolbelt", "1.0.0", TOOLBELT_SHA256),
    ):
        with zipfile.ZipFile(fetch_package(source, store.downloads)) as wheel:
            wheel.extractall(folder)
    sys.path.insert(0, str(folder))
    try:
        yield importlib.import_module("compreface")
    finally:
        sys.path.remove(str(folder))


COMPREFACE_SDK_SHA256 = "b9b155b80ba043e2349656e31ee02ffe1775caa0a45bd1cffc68367b206f4205"
TOOLBELT_SHA256 = "cccfdd665f0a24fcf4726e690f65639d272bb0637b9b92dfd91a5568ccf6bd06"


def test_compreface_sdk_examples_and_subjects(
    server: LiveServer, compreface_sdk: Any, photos: Path, tmp_path: Path
) -> None:
    domain, port = server.url.rsplit(":", 1)
    recognition = compreface_sdk.CompreFace(domain, port).init_face_recognition(server.key)
    faces, subjects = recognition.get_face_collection(), recognition.get_subjects()
    man = tmp_path / "man.jpg"
    man.write_bytes(crop(photos, "gender_detection_input.jpg", 420, 800))
    woman = tmp_path / "woman.jpg"
    woman.write_bytes(crop(photos, "gender_detection_input.jpg", 0, 420))
    # Subjects: create one with no examples, rename it, merge an example in.
    assert subjects.add("Alex") == {"subject": "Alex"}
    assert "Alex" in subjects.list()["subjects"]
    added = faces.add(str(man), "Sam")
    image_id = added["image_id"]
    assert subjects.update("Alex", "Kumail") == {"updated": True}
    assert subjects.update("Sam", "Kumail") == {"updated": True}  # merged into Kumail
    assert subjects.list()["subjects"] == ["Kumail"]
    assert faces.list()["faces"] == [{"image_id": image_id, "subject": "Kumail"}]
    # Verify a photo against one stored example, by its id: him, then her.
    same = faces.verify(str(man), image_id)["result"]
    other = faces.verify(str(woman), image_id)["result"]
    assert len(same) == 1 and same[0]["similarity"] > 0.9
    assert len(other) == 1 and other[0]["similarity"] < 0.45
    assert set(same[0]["box"]) >= {"probability", "x_min", "y_min", "x_max", "y_max"}
    # Delete that example by id; an unknown id is a 404 in CompreFace's shape.
    assert faces.delete(image_id) == {"image_id": image_id, "subject": "Kumail"}
    assert faces.delete(image_id)["code"] == 404
    assert faces.verify(str(man), image_id)["code"] == 404
    # Delete one subject, then all of them.
    faces.add(str(woman), "Mia")
    subjects.add("Noor")
    assert subjects.delete("Mia") == {"subject": "Mia"}
    assert subjects.delete_all() == {"deleted": 2}  # Kumail (now empty) and Noor
    assert subjects.list() == {"subjects": []}
