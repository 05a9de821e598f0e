"""--annotate pictures: what was found, readable at a glance, in the input's format."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
from helpers import run_mlapi

from mlapi import annotate, attributes
from mlapi.result import Detection, Result


def face(box: tuple[int, int, int, int], **attrs: object) -> Detection:
    return Detection("face", 0.88, box, "faces", attributes=dict(attrs))


def test_a_caption_says_who_and_what_was_found() -> None:
    named = face((0, 0, 9, 9), **attributes.recognised("Kumail", 0.7))
    assert annotate.caption(named) == "Kumail 0.88"
    unknown = face((0, 0, 9, 9), **attributes.recognised(attributes.UNKNOWN, 0.1))
    assert annotate.caption(unknown) == "face 0.88"
    described = face(
        (0, 0, 9, 9),
        **attributes.gender_age("female", 0.9, 33.4, "dlib"),
        **attributes.expression({"happy": 0.8, "neutral": 0.2}),
    )
    assert annotate.caption(described) == "face 0.88 | female 33 | happy"


def test_labels_of_boxes_on_one_spot_never_cover_each_other() -> None:
    # A horse also taken for a cow, a person under a clock and a face: the photo's cases.
    boxes = [(400, 137, 604, 345), (404, 139, 604, 339), (188, 100, 276, 377), (190, 95, 230, 130)]
    shape = (424, 640)
    taken: list[annotate.Rect] = []
    for box in boxes:
        taken.append(annotate._place(box, (120, 14), taken, shape))
    for a, b in itertools.combinations(taken, 2):
        assert not annotate._overlaps(a, b), (a, b)
    assert all(r[0] >= 0 and r[2] <= 640 and r[1] >= 0 and r[3] <= 424 for r in taken)


def test_draw_keeps_the_picture_and_marks_every_box() -> None:
    rgb = np.full((200, 300, 3), 90, np.uint8)
    result = Result(300, 200, (face((20, 30, 120, 150)), face((22, 28, 118, 148))))
    drawn = annotate.draw(rgb, result)
    assert drawn.shape == rgb.shape and (rgb == 90).all()  # a copy: the input is untouched
    assert (drawn != rgb).any(axis=2).sum() > 500


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
