"""Face attributes, faceprints, the gallery and recognition on the real sample photos."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import run_mlapi

from mlapi.engine import Engine
from mlapi.enroll import enroll
from mlapi.errors import DuplicateSample, GalleryError
from mlapi.images import decode, encode_jpeg
from mlapi.result import Detection
from mlapi.store import ModelCache
from mlapi.store.jsmodel import js_literal_to_json
from mlapi.stores.gallery import Gallery


def by_x(detections: Iterable[Detection]) -> list[Detection]:
    return sorted(detections, key=lambda d: d.box[0])


def crop(photos: Path, name: str, x1: int, x2: int) -> bytes:
    rgb = decode((photos / name).read_bytes()).pixels
    return encode_jpeg(np.ascontiguousarray(rgb[:, x1:x2]))


@pytest.fixture
def gallery_engine(store: ModelCache, tmp_path: Path) -> Iterator[Engine]:
    with Engine(store, gallery=Gallery(tmp_path / "gallery.json")) as engine:
        yield engine


@pytest.mark.parametrize("model", ["faceres", "dlib"])
def test_couple_is_a_woman_left_and_a_man_right(engine: Engine, photos: Path, model: str) -> None:
    result = engine.detect(
        (photos / "gender_detection_input.jpg").read_bytes(),
        ["genderage"],
        {"genderage": {"model": model}},
    )
    left, right = by_x(result.detections)
    assert left.attributes["genderage"] == model
    assert left.attributes["gender"]["label"] == "female"
    assert right.attributes["gender"]["label"] == "male"
    assert (
        min(left.attributes["gender"]["confidence"], right.attributes["gender"]["confidence"]) > 0.8
    )
    assert all(15 < d.attributes["age"] < 60 for d in (left, right))
    assert {d.model for d in result.detections} == {"genderage"}


@pytest.mark.parametrize("model", ["faceres", "dlib"])
def test_five_men_are_five_men(engine: Engine, photos: Path, model: str) -> None:
    result = engine.detect(
        (photos / "face_detection_input.jpg").read_bytes(),
        ["genderage"],
        {"genderage": {"model": model}},
    )
    assert [d.attributes["gender"]["label"] for d in result.detections] == ["male"] * 5


def test_attributes_merge_into_one_face_each(engine: Engine, photos: Path) -> None:
    data = (photos / "face_detection_input.jpg").read_bytes()
    merged = engine.detect(data, ["genderage", "emotion", "faceprint"]).detections
    assert len(merged) == 5 and {d.model for d in merged} == {"genderage+emotion+faceprint"}
    for face in merged:
        expressions = face.attributes["expressions"]
        assert len(expressions) == 7 and abs(sum(expressions.values()) - 1) < 1e-3
        assert face.attributes["emotion"] == max(expressions, key=expressions.get)
        assert len(face.embedding) == 128 and abs(np.linalg.norm(face.embedding) - 1) < 1e-4
    with_faces = engine.detect(data, ["faces", "genderage"]).detections
    assert {d.model for d in with_faces} == {"faces"} and "gender" in with_faces[0].attributes


def test_image_embeddings_are_normalised_and_find_near_duplicates(
    engine: Engine, photos: Path
) -> None:
    def vector(data: bytes) -> np.ndarray:
        (d,) = engine.detect(data, ["embeddings"]).detections
        assert d.label == "image" and len(d.embedding) == 1792
        return np.asarray(d.embedding)

    field = (photos / "object_detection_input.jpg").read_bytes()
    mirrored = encode_jpeg(np.ascontiguousarray(decode(field).pixels[:, ::-1]))
    a, b, other = (
        vector(field),
        vector(mirrored),
        vector((photos / "face_detection_input.jpg").read_bytes()),
    )
    assert abs(np.linalg.norm(a) - 1) < 1e-4
    assert a @ b > 0.75 and a @ b > a @ other + 0.2


def test_man_from_the_couple_is_recognised_among_the_five(
    gallery_engine: Engine, photos: Path
) -> None:
    man = crop(photos, "gender_detection_input.jpg", 420, 800)
    enrolled = enroll(gallery_engine, gallery_engine.runtime.gallery, "Kumail", man, "couple")
    assert gallery_engine.runtime.gallery.names() == ["Kumail"] and enrolled.sample_id
    result = gallery_engine.detect(
        (photos / "face_detection_input.jpg").read_bytes(), ["recognize"]
    )
    identities = [d.attributes["identity"] for d in by_x(result.detections)]
    assert identities == ["unknown", "unknown", "Kumail", "unknown", "unknown"]
    scores = [d.attributes["similarity"] for d in by_x(result.detections)]
    assert scores[2] > 0.67 > max(scores[:2] + scores[3:])


def test_strangers_are_not_named_at_the_threshold_deepstack_clients_send(
    gallery_engine: Engine, photos: Path
) -> None:
    # Home Assistant's and CodeProject.AI's clients send min_confidence=0.45.
    gallery = gallery_engine.runtime.gallery
    woman = crop(photos, "gender_detection_input.jpg", 0, 400)
    enroll(gallery_engine, gallery, "Her", woman, "couple")
    five = (photos / "face_detection_input.jpg").read_bytes()
    at_045 = {"recognize": {"threshold": 0.45}}
    strangers = gallery_engine.detect(five, ["recognize"], at_045).detections
    assert len(strangers) == 5
    assert all(d.attributes["identity"] == "unknown" for d in strangers)
    assert max(d.attributes["similarity"] for d in strangers) < 0.3  # well below, not just
    man = crop(photos, "gender_detection_input.jpg", 420, 800)
    enroll(gallery_engine, gallery, "Kumail", man, "couple")
    named = by_x(gallery_engine.detect(five, ["recognize"], at_045).detections)
    assert [d.attributes["identity"] for d in named] == ["unknown"] * 2 + ["Kumail"] + [
        "unknown"
    ] * 2


def test_bad_samples_are_refused_with_a_reason(gallery_engine: Engine, photos: Path) -> None:
    gallery = gallery_engine.runtime.gallery
    couple = (photos / "gender_detection_input.jpg").read_bytes()
    with pytest.raises(GalleryError, match="2 faces found"):
        enroll(gallery_engine, gallery, "Both", couple)
    field = crop(photos, "object_detection_input.jpg", 400, 640)  # the horse: no face
    with pytest.raises(GalleryError, match="no face"):
        enroll(gallery_engine, gallery, "Horse", field)
    man = decode(crop(photos, "gender_detection_input.jpg", 420, 800)).pixels
    blurred = encode_jpeg(cv2.GaussianBlur(man, (0, 0), 3))
    with pytest.raises(GalleryError, match="too blurred"):
        enroll(gallery_engine, gallery, "Blur", blurred)
    tiny = encode_jpeg(cv2.resize(man, (95, 133), interpolation=cv2.INTER_AREA))
    with pytest.raises(GalleryError, match=r"too small|no face"):
        enroll(gallery_engine, gallery, "Tiny", tiny)
    assert gallery.names() == []


def _add_many(path: str, name: str, count: int) -> None:
    gallery = Gallery(Path(path))
    for i in range(count):
        gallery.add(name, np.full(128, i / count, np.float32), "dlib", f"{name}-{i}")


def test_concurrent_adds_from_several_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "gallery.json"
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_add_many, args=(str(path), f"p{n}", 15)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    samples = Gallery(path).samples()
    assert len(samples) == 60 and len({s.id for s in samples}) == 60


def test_gallery_survives_a_process_killed_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "gallery.json"
    code = (
        f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
        f"from test_faces import _add_many; _add_many({str(path)!r}, 'victim', 100000)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not path.exists() or len(path.read_bytes()) < 200_000):
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    document = json.loads(path.read_text())  # still whole JSON
    kept = Gallery(path).samples()
    assert len(kept) == len(document["samples"]) > 10
    Gallery(path).add("after", np.zeros(128, np.float32), "dlib")  # the lock was released
    assert len(Gallery(path).samples()) == len(kept) + 1


def test_gallery_remove_person_or_sample(tmp_path: Path) -> None:
    gallery = Gallery(tmp_path / "g.json")
    first = gallery.add("Ann", np.ones(4, np.float32), "dlib")
    gallery.add("Ann", np.ones(4, np.float32), "dlib")
    gallery.add("Bo", np.ones(4, np.float32), "dlib")
    assert gallery.remove("Ann", first) == 1 and len(gallery.samples()) == 2
    assert gallery.remove("Ann") == 1 and gallery.names() == ["Bo"]
    with pytest.raises(GalleryError, match="no person 'Ann'"):
        gallery.remove("Ann")


def test_js_object_literal_from_minified_bundles() -> None:
    literal = "{format:\"graph-model\",a:[.5,-1e-3,!0,!1],'b':{c:'it\\'s'}}"
    assert js_literal_to_json(literal) == {
        "format": "graph-model",
        "a": [0.5, -0.001, True, False],
        "b": {"c": "it's"},
    }


def mlapi(args: list[str], data_dir: Path) -> subprocess.CompletedProcess[str]:
    return run_mlapi(args, MLAPI_DATA_DIR=str(data_dir))


def test_faces_cli_import_add_list_remove(photos: Path, tmp_path: Path) -> None:
    known = tmp_path / "known_faces"
    (known / "Kumail").mkdir(parents=True)
    (known / "Couple").mkdir()
    (known / "Kumail" / "right.jpg").write_bytes(
        crop(photos, "gender_detection_input.jpg", 420, 800)
    )
    (known / "Couple" / "both.jpg").write_bytes(
        (photos / "gender_detection_input.jpg").read_bytes()
    )
    (known / "Kumail" / "readme.txt").write_text("photos of Kumail")  # skipped, as detect does
    data = tmp_path / "data"
    imported = mlapi(["faces", "import", str(known)], data)
    assert imported.returncode == 1  # one photo refused, the other imported
    assert "added sample" in imported.stdout and "2 faces found" in imported.stderr
    again = mlapi(["faces", "import", str(known)], data)  # nothing is added twice
    assert "already in the gallery" in again.stdout and "0 of 2 photos added" in again.stderr
    assert "1 other file(s) skipped" in again.stderr and "readme.txt: not an image" in again.stderr
    assert mlapi(["faces", "list"], data).stdout == "Kumail\t1 sample(s)\n"
    # The very photo again is refused, with a message; another photo of him is added.
    same = mlapi(["faces", "add", "Kumail", str(known / "Kumail" / "right.jpg")], data)
    assert same.returncode == 1 and "already has a sample identical" in same.stderr
    assert mlapi(["faces", "list"], data).stdout == "Kumail\t1 sample(s)\n"
    other = tmp_path / "wider.jpg"
    other.write_bytes(crop(photos, "gender_detection_input.jpg", 380, 800))
    added = mlapi(["faces", "add", "Kumail", str(other)], data)
    assert added.returncode == 0, added.stderr
    assert mlapi(["faces", "list"], data).stdout == "Kumail\t2 sample(s)\n"
    sample = mlapi(["faces", "list", "--samples"], data).stdout.splitlines()[0].split("\t")[1]
    assert mlapi(["faces", "remove", "Kumail", "--sample", sample], data).returncode == 0
    assert mlapi(["faces", "list"], data).stdout == "Kumail\t1 sample(s)\n"
    gone = mlapi(["faces", "remove", "Nobody"], data)
    assert gone.returncode == 1 and "no person 'Nobody'" in gone.stderr


def test_seed_face_gender_items(photos: Path, tmp_path: Path) -> None:
    done = mlapi(
        [
            "detect",
            "--format",
            "mlapi",
            "-m",
            "genderage",
            str(photos / "gender_detection_input.jpg"),
        ],
        tmp_path,
    )
    items = sorted(json.loads(done.stdout), key=lambda i: i["box"][0])
    assert [set(i) for i in items] == [
        {"type", "label", "confidence", "box", "gender", "gender_confidence"}
    ] * 2
    assert [(i["type"], i["gender"]) for i in items] == [("face", "woman"), ("face", "man")]
    assert all(i["gender_confidence"].endswith("%") for i in items)


def test_faceprint_network_gives_dlibs_own_vectors(store: ModelCache, photos: Path) -> None:
    """The ONNX written from dlib's file (store/dlibnet.py) answers as dlib's own code does."""
    import dlib
    import onnxruntime

    folder = store.model_dir("dlib-face")
    aligner = dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat"))
    detector = dlib.get_frontal_face_detector()
    chips = []
    for name in ("face_detection_input.jpg", "gender_detection_input.jpg"):
        rgb = decode((photos / name).read_bytes()).pixels
        for rect in detector(rgb, 0):
            chips.append(dlib.get_face_chip(rgb, aligner(rgb, rect), size=150, padding=0.25))
    assert len(chips) >= 6
    network = dlib.face_recognition_model_v1(
        str(folder / "dlib_face_recognition_resnet_model_v1.dat")
    )
    want = np.array(network.compute_face_descriptor(chips), np.float32)
    session = onnxruntime.InferenceSession(str(store.artifact("dlib-face")))
    got = session.run(None, {"chips": np.stack(chips).astype(np.float32)})[0]
    assert got.shape == (len(chips), 128)
    assert np.abs(got - want).max() < 1e-4  # the vectors' values are about 0.1


def test_a_face_that_already_belongs_to_someone_else_is_said(
    gallery_engine: Engine, photos: Path, tmp_path: Path
) -> None:
    """Home Assistant's teach, then Double Take with another spelling: the same face under
    two names makes recognition name neither, so registering says so."""
    man = crop(photos, "gender_detection_input.jpg", 420, 800)
    gallery = gallery_engine.runtime.gallery
    first = enroll(gallery_engine, gallery, "Kumail", man, "teach")
    assert first.warning is None
    with pytest.raises(DuplicateSample, match="identical"):  # the very same photo again
        enroll(gallery_engine, gallery, "Kumail", man, "teach")
    other = enroll(gallery_engine, gallery, "kumail n", man, "double take")
    assert other.also_matches is not None and other.also_matches[0] == "Kumail"
    assert "also matches 'Kumail'" in (other.warning or "")
    woman = crop(photos, "gender_detection_input.jpg", 0, 420)
    assert enroll(gallery_engine, gallery, "Someone", woman, "couple").warning is None
    # The command line says it too.
    data = tmp_path / "data"
    photo = tmp_path / "man.jpg"
    photo.write_bytes(man)
    assert mlapi(["faces", "add", "Kumail", str(photo)], data).returncode == 0
    added = mlapi(["faces", "add", "Kumail N", str(photo)], data)
    assert added.returncode == 0 and "also matches 'Kumail'" in added.stderr
