"""`text` and `plates`: PP-OCRv6 on numpy and OpenCV.

The fast tier checks the decoding on made-up network outputs; the models tier reads real
photos of bench/eval/plates-text.json (public car fronts, plates and signs, fetched once
into the model cache as bench/ocr.py fetches them) and the sample photos.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from test_detectors import blank_frames, encode_png

from mlapi.detectors.ocr import (
    Line,
    Reading,
    charset_classes,
    ctc_decode,
    db_lines,
    is_latin,
)
from mlapi.detectors.plates import Candidate, PlateOptions, groups, plausible
from mlapi.detectors.text import TextOptions
from mlapi.engine import Engine
from mlapi.errors import OptionError
from mlapi.result import Detection
from mlapi.store import ModelCache
from mlapi.text import normalise_plate

BENCH = Path(__file__).parent.parent / "bench"
ALPHABET = ("", "A", "B", "1", "-", "中", " ")  # blank, letters, a digit, a sign, CJK, space


def probabilities(*columns: dict[str, float]) -> np.ndarray:
    """T×C probabilities over ALPHABET, one column per dict (the rest on the blank)."""
    out = np.zeros((len(columns), len(ALPHABET)), np.float32)
    for t, column in enumerate(columns):
        for ch, p in column.items():
            out[t, ALPHABET.index(ch)] = p
        out[t, 0] += 1 - out[t].sum()
    return out


# -- fast tier: decoding, without the models ---------------------------------------------
def test_ctc_merges_repeats_and_drops_blanks() -> None:
    columns = [{"A": 0.9}, {"A": 0.9}, {}, {"A": 0.8}, {"B": 0.7}, {" ": 0.9}, {"1": 0.6}]
    reading = ctc_decode(probabilities(*columns), ALPHABET, None)
    assert reading.text == "AAB 1"
    assert reading.probabilities == pytest.approx((0.9, 0.8, 0.7, 0.9, 0.6))
    assert reading.confidence == pytest.approx(0.78)


def test_latin_charset_masks_other_classes_before_the_argmax() -> None:
    classes = charset_classes(ALPHABET)
    assert [ALPHABET[i] for i in classes["latin"]] == ["", "A", "B", "1", "-", " "]
    assert [ALPHABET[i] for i in classes["plate"]] == ["", "A", "B", "1", "-", " "]
    look_alike = probabilities({"A": 0.9}, {"中": 0.6, "B": 0.3})
    assert ctc_decode(look_alike, ALPHABET, None).text == "A中"
    latin = ctc_decode(look_alike, ALPHABET, classes["latin"])
    assert latin.text == "AB"
    assert latin.probabilities == pytest.approx((0.9, 0.3))  # not made surer than it was
    assert is_latin("é") and is_latin("’") and not is_latin("中") and not is_latin("Ж")


def test_db_lines_grow_each_region_by_area_ratio_over_perimeter() -> None:
    prob = np.zeros((100, 200), np.float32)
    prob[40:60, 50:150] = 0.9  # a 100×20 line
    prob[5:7, 5:7] = 0.9  # too thin to be a line
    (line,) = db_lines(prob)
    grow = 100 * 20 * 1.6 / (2 * (100 + 20))  # 13.3 px on every side
    x1, y1, x2, y2 = line.box
    assert (x1, y1) == pytest.approx((50 - grow, 40 - grow), abs=1.5)
    assert (x2, y2) == pytest.approx((150 + grow, 60 + grow), abs=1.5)
    assert line.score == pytest.approx(0.9, abs=0.06)  # the mean inside its outline
    assert db_lines(prob * 0.4) == []  # under the map's threshold


def line(x1: float, y1: float, x2: float, y2: float) -> Line:
    quad = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]], np.float32)
    return Line(quad, 0.9)


def candidate(text: str, confidence: float = 0.95) -> Candidate:
    chars = len(text)
    return Candidate((line(0, 0, 100, 20),), Reading(text, confidence, (confidence,) * chars))


def test_two_stacked_lines_pair_as_one_plate_and_side_by_side_ones_do_not() -> None:
    top, bottom, beside = line(10, 0, 60, 20), line(5, 22, 70, 44), line(200, 0, 250, 20)
    assert (0, 1) in groups([top, bottom, beside])
    assert not any(len(g) > 1 and 2 in g for g in groups([top, bottom, beside]))
    assert (1, 0) not in groups([top, bottom])  # top line first


def test_plate_shaped_readings_only() -> None:
    options = PlateOptions()
    assert plausible(candidate("51G-100.96"), options, closeup=False)
    assert plausible(candidate("29-X5 048.99"), options, closeup=True)
    assert not plausible(candidate("KIA"), options, closeup=False)  # a badge
    assert not plausible(candidate("0000"), options, closeup=False)  # a row of knobs
    assert not plausible(candidate("NO PARKING"), options, closeup=False)
    assert not plausible(candidate("5341 2020"), options, closeup=True)  # digits alone
    assert plausible(candidate("5341 2020"), options, closeup=False)  # … are on a vehicle
    assert not plausible(candidate("51G-100.96", 0.4), options, closeup=False)
    vietnamese = PlateOptions.parse({"format": "[0-9]{2}[A-Z][0-9]{5}"})
    assert isinstance(vietnamese, PlateOptions)
    assert plausible(candidate("51G-100.96"), vietnamese, closeup=False)
    assert not plausible(candidate("5AU 5341"), vietnamese, closeup=False)
    assert normalise_plate("5au·534-1 ") == "5AU5341"


def test_a_character_cut_by_the_edge_is_read_only_when_clear() -> None:
    reading = Reading("60A-359.81 ", 0.9, (1.0,) * 9 + (0.56, 1.0))
    assert reading.strip(right=0.8).text == "60A-359.8"
    assert reading.strip().text == "60A-359.81"
    assert Reading("X", 0.3, (0.3,)).strip(left=0.8) == Reading("", 0.0)


@pytest.mark.parametrize(
    ("detector", "raw", "message"),
    [
        ("plates", {"format": "[A-Z"}, "format is not a regular expression"),
        ("plates", {"format": "A" * 201}, "longer than 200"),
        ("plates", {"confidence": "sure"}, "confidence must be a number"),
        ("plates", {"plate": "X"}, "unknown option plate"),
        ("text", {"charset": "cyrillic"}, "charset must be one of latin, all"),
        ("text", {"size": "100"}, "size must be between 320 and 2560"),
    ],
)
def test_bad_options_are_refused_with_the_reason(
    detector: str, raw: dict[str, str], message: str
) -> None:
    # An empty model cache: options are checked before anything is loaded.
    with Engine(ModelCache()) as engine, pytest.raises(OptionError, match=message) as refused:
        engine.make_plan([detector], {detector: raw})
    assert refused.value.status == 400
    assert TextOptions.parse({"charset": "all"}) == TextOptions(charset="all")


# -- models tier: real photos ------------------------------------------------------------
@pytest.fixture(scope="session")
def eval_photos(store: ModelCache) -> dict[str, Path]:
    """bench/eval/plates-text.json's photos by file name, fetched once into the cache."""
    sys.path.insert(0, str(BENCH))
    try:
        import evalset
    finally:
        sys.path.remove(str(BENCH))
    root = evalset.fetch(store, None, evalset.PLATES_TEXT)
    entries = evalset.entries(None, evalset.PLATES_TEXT)
    return {Path(e["path"]).name: Path(evalset.path(root, e)) for e in entries}


def plates(engine: Engine, path: Path, **options: Any) -> list[Detection]:
    result = engine.detect(path.read_bytes(), ["objects", "plates"], {"plates": options})
    return [d for d in result.detections if d.model == "plates"]


def texts(engine: Engine, path: Path, **options: Any) -> list[Detection]:
    return list(engine.detect(path.read_bytes(), ["text"], {"text": options}).detections)


def test_car_front_plate_is_read_exactly(engine: Engine, eval_photos: dict[str, Path]) -> None:
    (plate,) = plates(engine, eval_photos["carlong_0002.png"])  # a green Chevrolet's front
    assert plate.label == "plate" and plate.attributes["plate"] == "51G10096"
    assert plate.attributes["text"] == "51G-100.96" and plate.confidence > 0.9
    x1, y1, x2, y2 = plate.box  # the plate under the grille, 380×285 photo
    assert 170 < x1 < 200 and 115 < y1 < 140 and 255 < x2 < 285 and 145 < y2 < 165


def test_parked_car_plate_is_read_on_its_vehicle(
    engine: Engine, eval_photos: dict[str, Path]
) -> None:
    result = engine.detect(eval_photos["test_image.png"].read_bytes(), ["objects", "plates"])
    (plate,) = [d for d in result.detections if d.label == "plate"]
    assert plate.attributes["plate"] == "5AU5341" and plate.attributes["vehicle"] == "car"
    cars = [d.box for d in result.detections if d.label == "car"]
    x1, y1, x2, y2 = plate.box
    assert any(c[0] <= x1 and c[1] <= y1 and x2 <= c[2] and y2 <= c[3] for c in cars)


def test_a_two_line_plate_is_one_plate(engine: Engine, eval_photos: dict[str, Path]) -> None:
    (plate,) = plates(engine, eval_photos["a9_crop1.jpg"])  # yellow: "30A" over "875.51"
    assert plate.attributes["plate"] == "30A87551"
    assert plate.attributes["text"].split()[0] == "30A"


def test_the_format_option_keeps_matching_plates_only(
    engine: Engine, eval_photos: dict[str, Path]
) -> None:
    car = eval_photos["carlong_0002.png"]
    assert plates(engine, car, format="[0-9]{2}[A-Z][0-9]{5}")
    assert plates(engine, car, format="[A-Z]{3}[0-9]{4}") == []


def test_no_plate_on_photos_without_vehicles(engine: Engine, photos: Path) -> None:
    names = ("object_detection_input.jpg", "face_detection_input.jpg", "gender_detection_input.jpg")
    for name in names:  # a field with a horse, five men, a couple
        assert plates(engine, photos / name) == [], name


def test_sign_lines_are_read_top_to_bottom(engine: Engine, eval_photos: dict[str, Path]) -> None:
    found = texts(engine, eval_photos["scenetext01.jpg"])  # NOTICE / DOUBLE / PARKING / …
    assert all(d.label == "text" and d.model == "text" for d in found)
    by_text = {d.attributes["text"]: d for d in found}
    sign = ["NOTICE", "DOUBLE", "PARKING", "PROHIBITED"]
    assert set(sign) <= set(by_text)
    tops = [by_text[word].box[1] for word in sign]
    assert tops == sorted(tops)
    assert all(by_text[word].confidence > 0.9 for word in sign)


def test_latin_charset_reads_no_cjk(engine: Engine, eval_photos: dict[str, Path]) -> None:
    hotel = eval_photos["scenetext_segmented_word01.jpg"]
    for path in (hotel, eval_photos["scenetext05.jpg"], eval_photos["test_image.png"]):
        for d in texts(engine, path):
            assert all(is_latin(c) for c in d.attributes["text"]), (path.name, d.attributes)
    assert "HOTEL" in [d.attributes["text"] for d in texts(engine, hotel)]
    assert "HOTEL" in [d.attributes["text"] for d in texts(engine, hotel, charset="all")]


def test_blank_and_noisy_frames_give_no_text_and_no_plate(engine: Engine) -> None:
    for name, rgb in blank_frames().items():
        found = engine.detect(encode_png(rgb), ["text", "plates"]).detections
        assert found == (), (name, found)
