"""--annotate pictures: what was found, readable at a glance, in the input's format."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import run_mlapi

from mlapi import annotate, attributes
from mlapi.engine import Engine
from mlapi.images import decode
from mlapi.result import Detection, Result


def face(box: tuple[int, int, int, int], **attrs: object) -> Detection:
    return Detection("face", 0.88, box, "faces", attributes=dict(attrs))


def test_a_caption_says_who_and_what_was_found() -> None:
    # A recognised face: its name and how like that person it is, not the detector's
    # confidence that it is a face.
    named = face((0, 0, 9, 9), **attributes.recognised("Kumail", 0.7))
    assert annotate.caption(named) == "Kumail (similarity 0.70)"
    unknown = face((0, 0, 9, 9), **attributes.recognised(attributes.UNKNOWN, 0.1))
    assert annotate.caption(unknown) == "face 0.88"
    described = face(
        (0, 0, 9, 9),
        **attributes.gender_age("female", 0.9, 33.4, "dlib"),
        **attributes.expression({"happy": 0.8, "neutral": 0.2}),
    )
    assert annotate.caption(described) == "face 0.88 | female 33 | happy"
    assert annotate.headline(described) == "face 0.88"


def test_labels_of_boxes_on_one_spot_never_cover_each_other() -> None:
    # A horse also taken for a cow, a person under a clock and a face: the photo's cases.
    boxes = [(400, 137, 604, 345), (404, 139, 604, 339), (188, 100, 276, 377), (190, 95, 230, 130)]
    shape = (424, 640)
    taken: list[annotate.Rect] = []
    for box in boxes:
        spot = annotate._place(box, (120, 14), taken, shape)
        assert spot is not None
        taken.append(spot)
    for a, b in itertools.combinations(taken, 2):
        assert not annotate._overlaps(a, b), (a, b)
    assert all(r[0] >= 0 and r[2] <= 640 and r[1] >= 0 and r[3] <= 424 for r in taken)


def test_no_label_covers_a_face_in_a_crowd() -> None:
    """Faces side by side and stacked, with bodies under them: every label finds a place
    clear of every face (its own included), or is shortened, or left out; never on one."""
    faces = [face((x, y, x + 60, y + 70)) for x in range(40, 600, 70) for y in (60, 150)]
    bodies = [
        Detection("person", 0.9, (f.box[0] - 5, f.box[1] - 10, f.box[2] + 5, 420), "objects")
        for f in faces
    ]
    named = [
        Detection(f.label, f.confidence, f.box, f.model, attributes={
            **attributes.recognised("Someone with a long name", 0.81),
            **attributes.gender_age("male", 0.9, 40, "faceres"),
        })
        for f in faces
    ]  # fmt: skip
    result = Result(640, 424, tuple(named + bodies))
    labels = annotate.layout(result, (424, 640), 1)
    for label in labels:
        for f in named:
            assert not annotate._overlaps(label.spot, f.box), (label.text, f.box)
    for a, b in itertools.combinations(labels, 2):
        assert not annotate._overlaps(a.spot, b.spot)
    assert len(labels) > len(named)  # most still get one


def test_draw_keeps_the_picture_and_marks_every_box() -> None:
    rgb = np.full((200, 300, 3), 90, np.uint8)
    result = Result(300, 200, (face((20, 30, 120, 150)), face((22, 28, 118, 148))))
    drawn = annotate.draw(rgb, result)
    assert drawn.shape == rgb.shape and (rgb == 90).all()  # a copy: the input is untouched
    assert (drawn != rgb).any(axis=2).sum() > 500


@pytest.mark.parametrize("photo", ["face_detection_input.jpg", "gender_detection_input.jpg"])
def test_labels_of_a_group_photo_never_cover_a_face(
    engine: Engine, photos: Path, photo: str
) -> None:
    data = (photos / photo).read_bytes()
    result = engine.detect(data, ["objects", "faces", "genderage", "emotion"])
    height, width = decode(data).pixels.shape[:2]
    thickness = max(1, round(max(height, width) / 500))
    labels = annotate.layout(result, (height, width), thickness)
    faces = [d for d in result.detections if d.label == "face"]
    assert len(faces) == (5 if photo.startswith("face") else 2)
    for label in labels:
        for f in faces:  # nor the face box's line, drawn `thickness` wide around it
            x1, y1, x2, y2 = f.box
            line = (x1 - thickness, y1 - thickness, x2 + thickness, y2 + thickness)
            assert not annotate._overlaps(label.spot, line), (label.text, f.box)
    labelled = {id(label.detection) for label in labels}
    assert all(id(f) in labelled for f in faces)  # every face is still labelled


def test_annotate_keeps_a_png_a_png(photos: Path, tmp_path: Path) -> None:
    png = tmp_path / "dog.png"
    bgr = cv2.imread(str(photos / "object_detection_input.jpg"))
    assert bgr is not None
    cv2.imwrite(str(png), bgr)
    out = tmp_path / "out"
    done = run_mlapi(["detect", "--annotate", str(out), str(png)])
    assert done.returncode == 0, done.stderr
    assert [p.name for p in out.iterdir()] == ["dog.png"]
    assert (out / "dog.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
