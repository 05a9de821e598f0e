"""The memory of faces seen (issue 34), measured on the labelled public photos (not a test).

    .venv/bin/python bench/sightings.py            # everything (about 5 minutes on 2 cores)
    .venv/bin/python bench/sightings.py --quick    # fewer frames, requests and sightings

1. Grouping: every face with a known identity (the single-person photos of
   bench/eval/photos.json, and every Nth frame of kphotoalbum's movie.avi, a 160x120 webcam
   clip of Jesper) goes through `recognize` with the memory on (an empty gallery: all of
   them unknown) and the real Recorder into a real TinyDB store (sightings kept every time,
   the quality gate as served). Cluster purity (share of sightings whose cluster's majority
   is their own person; goal >= 0.95) and completeness (share of a person's sightings in
   their largest cluster; goal >= 0.8), pooled and per person; then the same faces
   clustered in memory at other join thresholds, centroid linkage (as the stores do) and
   best-member linkage, for dlib and faceres, in file order and over shuffled orders.
2. Naming: a person's faces recorded, their group named (naming.name_cluster into a real
   gallery), then held-out photos recognised, and every other labelled person's photo
   (strangers, who must stay unknown).
3. The quality gate on every face found in the photos with labelled faces and in the
   video frames: kept and refused, by reason, the refused listed, and whether the good
   faces (at least 48 px wide, turned at most 30 degrees) are kept.
4. Costs, on `mlapi serve` child processes: recognition per request with the memory off,
   on, and on with 10,000 sightings kept (requests interleaved); listing 10,000 unknown
   sightings (GET /api/v1/faces/unknown) while /health is asked every 10 ms; the Recorder
   offered faster than its store writes (never blocking, drops counted); one `record`
   batch at 10,000 sightings in the TinyDB store.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import evalset
from benchmark import ServerProcess, multipart, server_timing
from processes import cpu_name

from mlapi import attributes, samples
from mlapi.config import RuntimeConfig
from mlapi.engine import Engine
from mlapi.images import decode, encode_jpeg
from mlapi.result import Detection, Result
from mlapi.sightings import naming
from mlapi.sightings.clustering import Centroids
from mlapi.sightings.quality import Seen, measure
from mlapi.sightings.quality import picture as face_picture
from mlapi.sightings.recorder import Recorder
from mlapi.sightings.settings import FaceMemory
from mlapi.similarity import MATCH_AT, normalise, similarity
from mlapi.store import ModelCache
from mlapi.stores import NewSighting, Retention
from mlapi.stores.gallery import Gallery
from mlapi.stores.sightings import FileSightings

FIVE = "face_detection_input.jpg"  # the sample photo of five men in a row (4a)
VIDEO = "movie.avi"  # kphotoalbum's webcam clip of Jesper (160x120, 68 frames)
GATE = FaceMemory()  # the served defaults
EVERY = FaceMemory(sightings_interval=0)  # every face kept: each is a sighting to group
JOIN_AT = (0.4, 0.45, 0.5, 0.55, 0.6, 0.67, 0.7, 0.75, 0.8)
GOOD_WIDTH, GOOD_TURN = 48, 30.0  # a "good" face for the gate's check
PURITY_GOAL, COMPLETENESS_GOAL = 0.95, 0.8


@dataclass
class Face:
    where: str  # the photo's file name, or movie.avi#FRAME
    identity: str | None  # the labelled person, None where the labels do not say
    detection: Detection  # as recognize gave it (its memo: dlib's Seen)
    faceres: Seen | None  # the same face's memo with faceres' faceprint

    @property
    def seen(self) -> Seen:
        memo: Seen = self.detection.memo
        return memo

    @property
    def refusal(self) -> str | None:
        return self.seen.quality.refusal(GATE)


def ms(seconds: float) -> float:
    return seconds * 1000.0


def pct(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


# -- the labelled faces ----------------------------------------------------------------------
def frames(path: Path, every: int) -> Iterator[tuple[int, bytes]]:
    """Every `every`th frame of a video as a JPEG (as a camera client would send it)."""
    import cv2

    video = cv2.VideoCapture(str(path))
    index = 0
    try:
        while True:
            ok, bgr = video.read()
            if not ok:
                return
            if index % every == 0:
                yield index, encode_jpeg(np.ascontiguousarray(bgr[:, :, ::-1]), 95)
            index += 1
    finally:
        video.release()


def largest(faces: Sequence[Detection]) -> Detection | None:
    return max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]), default=None)


# Where the labels' names are in group photos: kphotoalbum's demo index.xml gives the face
# areas (x, y, width, height) of qt-logo.jpg (photos.json: "left to right Wayne, Jesper, Jim").
AREAS = {
    "qt-logo.jpg": {
        "Wayne": (144, 78, 148, 152),
        "Jesper": (342, 89, 148, 157),
        "Jim": (558, 45, 137, 144),
    }
}


def who_is_where(entry: dict[str, Any], found: Sequence[Detection]) -> dict[int, str]:
    """The labelled person of each face found (by index), from the labels:
    - a photo of one labelled person (`identity`): the largest face;
    - one name in a group photo whose labels say that person's face is the clear one in
      front (cold_water.jpg, pool.jpg): the largest face;
    - names with face areas (AREAS): the face whose centre is in the area;
    - no names at all (t1.jpg, faces.jpg, basketball1.png): each face a different person
      (strangers to everyone else, who test that groups do not merge people).
    Anything else is unlabelled."""
    if not entry.get("faces"):
        return {}  # what is found in a photo of no face is no one
    name = Path(entry["path"]).name
    names = entry.get("names_in_photo") or []
    big = largest(found)
    at = {id(d): i for i, d in enumerate(found)}
    if entry.get("identity") and entry["faces"] == 1 and big is not None:
        return {at[id(big)]: entry["identity"]}
    if len(names) == 1 and name in ("cold_water.jpg", "pool.jpg") and big is not None:
        return {at[id(big)]: names[0]}
    if name in AREAS:
        out = {}
        for person, (x, y, w, h) in AREAS[name].items():
            for i, d in enumerate(found):
                cx, cy = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
                if x <= cx <= x + w and y <= cy <= y + h:
                    out[i] = person
        return out
    if not names and not entry.get("identity"):
        return {i: f"{name} #{i + 1}" for i in range(len(found))}
    return {}


def faces_of(engine: Engine, where: str, data: bytes, entry: dict[str, Any]) -> list[Face]:
    """Every face recognize finds (with its memo for dlib and for faceres), each with its
    labelled person where the labels say."""
    found = engine.detect(data, ["recognize"]).detections
    other = engine.detect(data, ["recognize"], {"faceprint": {"model": "faceres"}}).detections
    by_box = {d.box: d.memo for d in other}
    named = who_is_where(entry, found)
    return [Face(where, named.get(i), d, by_box.get(d.box)) for i, d in enumerate(found)]


def collect(engine: Engine, root: Path, every: int) -> tuple[list[Face], dict[str, int]]:
    """The faces of the photos with labelled faces and of the video's frames, in file order;
    and the labelled count of faces per photo or frame."""
    faces: list[Face] = []
    labelled: dict[str, int] = {}
    for entry in evalset.entries():
        name = Path(entry["path"]).name
        labelled[name] = entry["faces"]
        data = evalset.path(root, entry).read_bytes()
        _pictures[name] = data
        faces += faces_of(engine, name, data, entry)
    video = next(e for e in evalset.entries("video") if e["path"].endswith(VIDEO))
    for index, data in frames(evalset.path(root, video), every):
        where = f"{VIDEO}#{index}"
        _pictures[where] = data
        faces += faces_of(engine, where, data, video)
        labelled[where] = 1
    return faces, labelled


_pictures: dict[str, bytes] = {}  # each photo or frame by its name


# -- grouping ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Score:
    purity: float
    completeness: float
    clusters: int
    sightings: int
    per_person: dict[str, tuple[int, float, float, int]]  # n, purity, completeness, clusters


def score(identities: Sequence[str], clusters: Sequence[str]) -> Score:
    """Purity: the share of sightings whose cluster's most common person is their own.
    Completeness: the share of each person's sightings in their largest cluster (pooled:
    Σ largest / all sightings)."""
    members: dict[str, Counter[str]] = {}
    for who, c in zip(identities, clusters, strict=True):
        members.setdefault(c, Counter())[who] += 1
    majority = {c: counts.most_common(1)[0][0] for c, counts in members.items()}
    per: dict[str, tuple[int, float, float, int]] = {}
    pure_all = largest_all = 0
    for who in sorted(set(identities)):
        mine = [c for i, c in zip(identities, clusters, strict=True) if i == who]
        pure = sum(majority[c] == who for c in mine)
        biggest = Counter(mine).most_common(1)[0][1]
        per[who] = (len(mine), pure / len(mine), biggest / len(mine), len(set(mine)))
        pure_all += pure
        largest_all += biggest
    n = len(identities)
    return Score(pure_all / n if n else 1.0, largest_all / n if n else 1.0, len(members), n, per)


def grouped(vectors: Sequence[np.ndarray], model: str, join_at: float, linkage: str) -> list[str]:
    """Each face's cluster as the stores make them (centroid: mlapi's own Centroids), or
    joining the cluster of the most similar earlier face (best member)."""
    if linkage == "centroid":
        place = Centroids(model)
        out = []
        for i, v in enumerate(vectors):
            c = place.join(v, join_at)
            if c is None:
                c = str(i)
                place.add(c, v)
            out.append(c)
        return out
    labels: list[str] = []
    for i, v in enumerate(vectors):
        if labels:
            cosines = np.stack(vectors[:i]) @ v
            best = int(np.argmax(cosines))
            if similarity(float(cosines[best]), model) >= join_at:
                labels.append(labels[best])
                continue
        labels.append(str(i))
    return labels


def kept_unknown(faces: Sequence[Face]) -> list[Face]:
    """The labelled faces the Recorder keeps as unknown (the gate passes them)."""
    return [f for f in faces if f.identity is not None and f.refusal is None]


def record_all(store: FileSightings, faces: Sequence[Face], memory: FaceMemory) -> dict[str, str]:
    """Each face offered to a real Recorder as a one-face answer, one request at a time;
    the sighting's source is the face's index. Returns {index: cluster}."""
    recorder = Recorder(store, memory, pause=0.0)
    try:
        for i, f in enumerate(faces):
            result = Result(0, 0, (f.detection,))
            recorder.offer(result, "/bench", "bench", source=str(i))
            recorder.flush()
    finally:
        recorder.close()
    return {s.source: c.id for c in store.clusters(best=10**6) for s in c.sightings}


def score_line(label: str, s: Score) -> str:
    return (
        f"| {label} | {s.sightings} | {s.clusters} | {s.purity:.3f} | {s.completeness:.3f} | "
        f"{'yes' if s.purity >= PURITY_GOAL and s.completeness >= COMPLETENESS_GOAL else 'no'} |"
    )


def grouping_section(faces: list[Face], shuffles: int) -> None:
    kept = kept_unknown(faces)
    labelled = [f for f in faces if f.identity is not None]
    print(
        f"\n## 1. Grouping: {len(kept)} of {len(labelled)} labelled faces kept by the gate "
        f"({len({f.identity for f in kept})} people), offered in file order"
    )
    with tempfile.TemporaryDirectory() as tmp:
        store = FileSightings(Path(tmp) / "sightings.json")
        placed = record_all(store, kept, EVERY)
    stored = score(
        [f.identity or "" for f in kept], [placed.get(str(i), "?") for i in range(len(kept))]
    )
    simulated = score(
        [f.identity or "" for f in kept],
        grouped([f.seen.embedding for f in kept], "dlib", MATCH_AT, "centroid"),
    )
    photos = [f for f in kept if not f.where.startswith(VIDEO)]
    photos_only = score(
        [f.identity or "" for f in photos],
        grouped([f.seen.embedding for f in photos], "dlib", MATCH_AT, "centroid"),
    )
    print("\n| grouping | sightings | clusters | purity | completeness | goals met |")
    print("|---|---|---|---|---|---|")
    print(score_line(f"TinyDB store via the Recorder (dlib, join_at {MATCH_AT})", stored))
    print(score_line(f"in memory, the same rule (dlib, centroid, {MATCH_AT})", simulated))
    print(score_line(f"in memory, the photos alone (no {VIDEO} frames)", photos_only))
    print("\nper person seen more than once (store, dlib, default):")
    print("\n| person | sightings | clusters | purity | completeness |")
    print("|---|---|---|---|---|")
    once = []
    for who, (n, pure, complete, count) in stored.per_person.items():
        if n == 1:
            once.append(pure)
            continue
        print(f"| {who} | {n} | {count} | {pure:.2f} | {complete:.2f} |")
    print(
        f"\npeople seen once: {len(once)}, of whom {int(sum(once))} in a group of their own "
        "(or one they lead)"
    )
    print(
        "photos alone, per person seen more than once: "
        + ", ".join(
            f"{who} {n} sightings in {count} groups (completeness {complete:.2f})"
            for who, (n, _, complete, count) in photos_only.per_person.items()
            if n > 1
        )
    )
    at = [placed.get(str(i), "?") for i in range(len(kept))]
    for who in sorted({f.identity or "" for f in kept}):
        mine = [(f.where, c) for f, c in zip(kept, at, strict=True) if f.identity == who]
        main = Counter(c for _, c in mine).most_common(1)[0][0]
        apart = [where for where, c in mine if c != main]
        if apart:
            print(f"{who}: outside their largest group: {', '.join(apart)}")

    print(
        "\nthe curve: join_at (calibrated similarity) x linkage x faceprint model; file "
        f"order, and the mean over {shuffles} shuffled orders"
    )
    print(
        "\n| model | linkage | join_at | clusters | purity | completeness | "
        "shuffled purity | shuffled completeness |"
    )
    print("|---|---|---|---|---|---|---|---|")
    rng = random.Random(34)
    orders = [rng.sample(range(len(kept)), len(kept)) for _ in range(shuffles)]
    for model in ("dlib", "faceres"):
        chosen = [f for f in kept if model == "dlib" or f.faceres is not None]
        vectors = [f.seen.embedding if model == "dlib" else f.faceres.embedding for f in chosen]  # type: ignore[union-attr]
        who = [f.identity or "" for f in chosen]
        for linkage in ("centroid", "best member"):
            for join_at in JOIN_AT:
                s = score(who, grouped(vectors, model, join_at, linkage))
                mixed = [
                    score(
                        [who[i] for i in o],
                        grouped([vectors[i] for i in o], model, join_at, linkage),
                    )
                    for o in orders
                ]
                print(
                    f"| {model} | {linkage} | {join_at:.2f} | {s.clusters} | {s.purity:.3f} | "
                    f"{s.completeness:.3f} | "
                    f"{statistics.mean(m.purity for m in mixed):.3f} | "
                    f"{statistics.mean(m.completeness for m in mixed):.3f} |"
                )


# -- naming ----------------------------------------------------------------------------
CASES = (
    # person, what is recorded and named, what is held out
    ("Barack Obama", ("obama.jpg", "obama2.jpg"), ("obama3.jpg",)),
    ("Jesper", (VIDEO,), ("jesper.jpg", "jesper_2.jpg", "grand_canyon_2.jpg", "new_wave_2.jpg")),
    ("Jesper", ("jesper.jpg", "jesper_2.jpg"), ("grand_canyon_2.jpg", "new_wave_2.jpg", VIDEO)),
)


def naming_section(engine: Engine, faces: list[Face]) -> None:
    print("\n## 2. Naming one group, then recognising new photos of that person")
    print(
        "\n(the faces recorded as unknown (gate as served), the largest group they made named "
        "with naming.name_cluster into a real gallery, then recognize at its defaults on every "
        "other labelled face: the held-out ones of that person, and everyone else's)"
    )
    print(
        "\n| person | recorded and named | groups they made | group named | samples | held out "
        "| named right | missed | other people named |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    people = [f for f in faces if f.identity is not None]

    def picture(f: Face) -> str:
        return f.where.split("#")[0]

    for person, named_from, held_out in CASES:
        train = [f for f in people if f.identity == person and picture(f) in named_from]
        with tempfile.TemporaryDirectory() as tmp:
            store = FileSightings(Path(tmp) / "sightings.json")
            gallery = Gallery(Path(tmp) / "gallery.json")
            record_all(store, train, EVERY)
            clusters = store.clusters(best=10**6)
            if not clusters:
                print(f"| {person} | {', '.join(named_from)} | 0 (all refused) | | | | | | |")
                continue
            biggest = max(clusters, key=lambda c: c.count)
            named = naming.name_cluster(gallery, store, biggest.id, person)
            engine.runtime.gallery = gallery
            probes = [f for f in people if picture(f) not in named_from]
            now = names_now(engine, {f.where for f in probes})
            mine = [f for f in probes if f.identity == person and picture(f) in held_out]
            others = [f for f in probes if f.identity != person]
            missed = [f.where for f in mine if now.get((f.where, tuple(f.detection.box))) != person]
            wrong = [
                f"{f.where} ({f.identity})" for f in others
                if now.get((f.where, tuple(f.detection.box))) is not None
            ]  # fmt: skip
            print(
                f"| {person} | {', '.join(named_from)} ({len(train)} faces) | {len(clusters)} | "
                f"{biggest.count} faces | {len(named.samples)} | {', '.join(held_out)} | "
                f"{len(mine) - len(missed)}/{len(mine)} | {', '.join(missed) or '-'} | "
                f"{len(wrong)}/{len(others)}{': ' + ', '.join(wrong) if wrong else ''} |"
            )
    engine.runtime.gallery = Gallery(Path(tempfile.mkdtemp()) / "empty.json")


def names_now(engine: Engine, wheres: set[str]) -> dict[tuple[str, tuple[int, ...]], str | None]:
    """Who recognize names each face of these pictures now, by (picture, box)."""
    out: dict[tuple[str, tuple[int, ...]], str | None] = {}
    for where in sorted(wheres):
        for d in engine.detect(_pictures[where], ["recognize"]).detections:
            out[where, tuple(d.box)] = attributes.known_identity(d)
    return out


# -- the gate ---------------------------------------------------------------------------
REASONS = (
    ("too small", "too small"),
    ("too blurred", "too blurred"),
    ("turned too far", "turned too far"),
    ("low score", "too little confidence"),
)


def reason(refusal: str | None) -> str:
    if refusal is None:
        return "kept"
    return next(short for short, text in REASONS if text in refusal)


def gate_section(faces: list[Face], labelled: dict[str, int]) -> None:
    photos = [f for f in faces if labelled.get(f.where) and not f.where.startswith(VIDEO)]
    false = [f for f in faces if not labelled.get(f.where)]
    video = [f for f in faces if f.where.startswith(VIDEO)]
    faces = photos + video
    print(
        "\n## 3. The quality gate (served defaults: width >= "
        f"{GATE.face_min_pixels} px, sharpness >= {GATE.face_min_sharpness:.0f}, turn <= "
        f"{GATE.face_max_turn:.0f} deg, score >= {GATE.face_min_score})"
    )
    print(
        "\n| faces | found (labelled) | kept | too small | too blurred | turned too far "
        "| low score |"
    )
    print("|---|---|---|---|---|---|---|")
    for label, group, want in (
        ("photos", photos, sum(v for k, v in labelled.items() if not k.startswith(VIDEO))),
        ("photos of no face (false faces)", false, 0),
        (f"{VIDEO} frames", video, sum(v for k, v in labelled.items() if k.startswith(VIDEO))),
    ):
        first = Counter(reason(f.refusal) for f in group)
        print(
            f"| {label} | {len(group)} ({want}) | {first['kept']} | {first['too small']} | "
            f"{first['too blurred']} | {first['turned too far']} | {first['low score']} |"
        )
    good = [
        f for f in faces
        if f.seen.quality.width >= GOOD_WIDTH and (f.seen.quality.turn or 0.0) <= GOOD_TURN
    ]  # fmt: skip
    good_kept = sum(f.refusal is None for f in good)
    print(
        f"\ngood faces (>= {GOOD_WIDTH} px wide, turned <= {GOOD_TURN:.0f} deg): "
        f"{good_kept}/{len(good)} kept"
    )
    print(
        f"\nfalse faces (in photos labelled with none): {len(false)}, of which "
        f"{sum(f.refusal is not None for f in false)} refused: "
        + (
            ", ".join(
                f"{f.where} ({f.seen.quality.width} px, score {f.seen.quality.confidence:.2f}, "
                f"{reason(f.refusal)})"
                for f in false
            )
            or "none"
        )
    )
    print("\nrefused (the first reason; each face's width, sharpness, turn and score):")
    print("\n| where | person | box | width | sharpness | turn | score | reason |")
    print("|---|---|---|---|---|---|---|---|")
    for f in faces:
        if f.refusal is None:
            continue
        q = f.seen.quality
        turn = "-" if q.turn is None else f"{q.turn:.0f}"
        print(
            f"| {f.where} | {f.identity or ''} | {list(f.detection.box)} | {q.width} | "
            f"{q.sharpness:.0f} | {turn} | {q.confidence:.2f} | {reason(f.refusal)} |"
        )


# -- costs -----------------------------------------------------------------------------
def fill(store: FileSightings, faces: list[Face], total: int, batch: int) -> list[float]:
    """`total` unknown sightings in batches of `batch` (the Recorder's largest): real dlib
    faceprints as people (each real face, moved a little, is a few people) and noise per
    sighting; one real 96 px face picture for all. Returns each batch's seconds."""
    rng = np.random.default_rng(34)
    bases = np.stack([f.seen.embedding for f in faces if f.refusal is None])
    people = normalise(bases[rng.integers(0, len(bases), 1000)] + rng.normal(0, 0.037, (1000, 128)))
    picture = encode_jpeg(faces[0].seen.picture, 85)
    keep = Retention(every=0, most=total)
    now = time.time()
    times = []
    for start in range(0, total, batch):
        n = min(batch, total - start)
        who = rng.integers(0, len(people), n)
        vectors = normalise(people[who] + rng.normal(0, 0.029, (n, 128))).astype(np.float32)
        new = [
            NewSighting(
                seen=now - 86400 * 7 + (start + i) * 60.0,
                model="dlib",
                embedding=vectors[i],
                box=(10, 10, 110, 110),
                quality=float(rng.uniform(0.3, 1.0)),
                picture=picture,
                source=f"camera {int(who[i]) % 8}",
                route="/api/v1/detect",
                client="bench",
            )
            for i in range(n)
        ]
        started = time.perf_counter()
        store.record(new, keep)
        times.append(time.perf_counter() - started)
    return times


def http_call(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, bytes, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    conn.request(method, path, body, headers or {})
    response = conn.getresponse()
    data = response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    return response.status, data, elapsed


@contextmanager
def health_probe(port: int) -> Iterator[list[float]]:
    """/health asked every 10 ms while the block runs: its answer times (seconds)."""
    times: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        while not stop.is_set():
            times.append(http_call(port, "GET", "/health")[2])
            stop.wait(0.01)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        yield times
    finally:
        stop.set()
        thread.join()


def recognition_section(servers: dict[str, ServerProcess], photo: bytes, rounds: int) -> None:
    body, content_type = multipart(photo, "image", {"models": "recognize", "source": "bench"})
    client: dict[str, list[float]] = {label: [] for label in servers}
    stages: dict[str, dict[str, list[float]]] = {label: {} for label in servers}

    def ask(server: ServerProcess) -> tuple[float, dict[str, float], int]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
        started = time.perf_counter()
        conn.request(
            "POST", "/api/v1/detect", body, {"Content-Type": content_type, "X-API-Key": server.key}
        )
        response = conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - started
        conn.close()
        assert response.status == 200, data[:200]
        return elapsed, server_timing(response), len(json.loads(data)["detections"])

    for server in servers.values():  # warm
        for _ in range(3):
            ask(server)
    order = list(servers.items())
    faces = 0
    for r in range(rounds):
        for label, server in order if r % 2 == 0 else order[::-1]:
            elapsed, timing, faces = ask(server)
            client[label].append(elapsed)
            for name, value in timing.items():
                stages[label].setdefault(name, []).append(value)
            time.sleep(0.2)  # a camera's pace, not back to back
    base = statistics.median(client[next(iter(servers))])
    print(
        f"\non `mlapi serve` ({faces} faces, POST /api/v1/detect models=recognize, --workers 1; "
        f"{rounds} rounds, the servers interleaved, 0.2 s apart; the recognize stage and the "
        "server's total from its Server-Timing header)"
    )
    print(
        "\n| server | p50 ms | p90 ms | p50 - off | recognize stage p50 ms | server total p50 ms |"
    )
    print("|---|---|---|---|---|---|")
    for label, values in client.items():
        p50 = statistics.median(values)
        print(
            f"| {label} | {ms(p50):.1f} | {ms(pct(values, 90)):.1f} | {ms(p50 - base):+.1f} | "
            f"{statistics.median(stages[label].get('recognize', [0.0])):.1f} | "
            f"{statistics.median(stages[label].get('total', [0.0])):.1f} |"
        )


def listing_section(server: ServerProcess, total: int, repeats: int, first: str) -> None:
    print(
        f"\n### 4b. Listing {total} unknown sightings in groups (GET /api/v1/faces/unknown, "
        "the first page of 100) while /health is asked every 10 ms"
    )
    print("\n| listing | ms | groups | /health p50 ms | /health max ms | /health answers |")
    print("|---|---|---|---|---|---|")
    headers = {"X-API-Key": server.key}
    for run in range(repeats):
        with health_probe(server.port) as health:
            time.sleep(0.05)
            status, data, elapsed = http_call(
                server.port, "GET", "/api/v1/faces/unknown", None, headers
            )
            time.sleep(0.05)
        assert status == 200, data[:200]
        listing = json.loads(data)
        label = first if run == 0 else f"again ({run})"
        print(
            f"| {label} | {ms(elapsed):.0f} | {listing['total']} | "
            f"{ms(statistics.median(health)):.1f} | {ms(max(health)):.1f} | {len(health)} |"
        )


def recorder_section(faces: list[Face], offers: int) -> None:
    """The Recorder offered far faster than its store can write: offer() never waits."""
    face = next(f for f in faces if f.refusal is None)
    result = Result(0, 0, (face.detection,))
    with tempfile.TemporaryDirectory() as tmp:
        store = FileSightings(Path(tmp) / "sightings.json")
        recorder = Recorder(store, EVERY)  # the served pause between writes (1 s)
        times = []
        started = time.perf_counter()
        for i in range(offers):
            t = time.perf_counter()
            recorder.offer(result, "/bench", "bench", source=str(i % 50))
            times.append(time.perf_counter() - t)
        offering = time.perf_counter() - started
        recorder.close(60)
        counts = recorder.counts
    print(
        f"\n### 4c. The Recorder offered {offers} faces in {offering:.2f} s (one face per offer, "
        "the served queue of 1024 and 1 s between writes)"
    )
    print("\n| offer p50 µs | offer p99 µs | offer max ms | kept | dropped | refused | failed |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| {pct(times, 50) * 1e6:.1f} | {pct(times, 99) * 1e6:.1f} | {ms(max(times)):.2f} | "
        f"{counts['kept']} | {counts['dropped']} | {counts['refused']} | {counts['failed']} |"
    )


def record_times(
    store: FileSightings, batch: list[NewSighting], keep: Retention, runs: int
) -> list[float]:
    times = []
    for _ in range(runs):
        fresh = [replace(n, seen=time.time()) for n in batch]
        started = time.perf_counter()
        store.record(fresh, keep)
        times.append(time.perf_counter() - started)
    return times


def record_section(
    store: FileSightings, faces: list[Face], fill_times: list[float], runs: int
) -> None:
    total = sum(c.count for c in store.clusters(best=0))
    groups = len(store.clusters(best=0))
    picture = encode_jpeg(faces[0].seen.picture, 85)
    keep = Retention(every=0, most=total)
    rng = np.random.default_rng(7)
    base = np.stack([f.seen.embedding for f in faces if f.refusal is None])
    rows = []
    for size in (1, 256):
        # New people (each a real faceprint moved as far as another person is): each starts
        # a group, the costlier case.
        vectors = normalise(
            base[rng.integers(0, len(base), size)] + rng.normal(0, 0.037, (size, 128))
        )
        batch = [
            NewSighting(0.0, "dlib", v.astype(np.float32), (1, 1, 99, 99), 0.5, picture, source="x")
            for v in vectors
        ]
        rows.append((size, record_times(store, batch, keep, runs)))
    print(
        f"\n### 4d. One record batch in the TinyDB store at {total} sightings in {groups} groups "
        f"(the oldest dropped to stay at {total}); filling it took {sum(fill_times):.0f} s in "
        f"{len(fill_times)} batches of 256; {runs} runs each"
    )
    print("\n| batch of new faces | median ms | max ms |")
    print("|---|---|---|")
    for size, times in rows:
        print(f"| {size} | {ms(statistics.median(times)):.0f} | {ms(max(times)):.0f} |")
    print(f"| 256 (the last while filling: most join a group) | {ms(fill_times[-1]):.0f} | - |")


def memo_cost(photo: bytes, rounds: int) -> None:
    """What recognize does more with the memory on, in this process: measure() and
    picture() of each face, and the whole detection interleaved on and off."""
    with tempfile.TemporaryDirectory() as tmp:
        config = RuntimeConfig(workers=1, intra_op_threads=1)  # serve's defaults per request
        with Engine(ModelCache(), config, gallery=Gallery(Path(tmp) / "g.json")) as engine:
            found = engine.detect(photo, ["recognize"]).detections
            image = decode(photo)
            per_face = []
            for _ in range(rounds * 5):
                started = time.perf_counter()
                for face in found:
                    measure(image, face)
                    face_picture(image, face)
                per_face.append((time.perf_counter() - started) / len(found))
            times: dict[bool, list[float]] = {False: [], True: []}
            for r in range(rounds):
                for on in (False, True) if r % 2 else (True, False):
                    engine.runtime.remember_faces = on
                    started = time.perf_counter()
                    engine.detect(photo, ["recognize"])
                    times[on].append(time.perf_counter() - started)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    print(
        f"\n### 4a. What the memory adds to recognition ({len(found)} faces in the photo)\n"
        f"\nin this process: measure() + picture() per face, median "
        f"{ms(statistics.median(per_face)):.2f} ms; the detection, {rounds} rounds interleaved: "
        f"off {ms(off):.1f} ms, on {ms(on):.1f} ms (p50), difference {ms(on - off):+.1f} ms"
    )


def costs_section(faces: list[Face], photo: bytes, quick: bool) -> None:
    total = 2000 if quick else 10_000
    rounds = 10 if quick else 40
    print(f"\n## 4. Costs ({total} sightings kept where full)")
    recorder_section(faces, 3000 if quick else 20_000)
    with tempfile.TemporaryDirectory() as tmp:
        store = FileSightings(Path(tmp) / "sightings.json")
        fill_times = fill(store, faces, total, 256)
        record_section(store, faces, fill_times, 3 if quick else 5)
        models = ("--models", "faces,faceprint,recognize", "--workers", "1")
        servers = {
            "memory off (--no-face-memory)": ServerProcess(*models, "--no-face-memory"),
            "memory on (served defaults)": ServerProcess(*models),
            "memory on, every face kept": ServerProcess(*models, "--sightings-interval", "0"),
            f"memory on (served defaults), {total} kept": ServerProcess(
                *models, "--sightings-max", str(total)
            ),
            f"memory on, every face kept, {total} kept": ServerProcess(
                *models, "--sightings-interval", "0", "--sightings-max", str(total)
            ),
        }
        try:
            full = servers[f"memory on, every face kept, {total} kept"]
            for label, server in servers.items():
                if label.endswith(f"{total} kept"):
                    shutil.copy(Path(tmp) / "sightings.json", Path(server.data) / "sightings.json")
                    shutil.copytree(Path(tmp) / "sightings", Path(server.data) / "sightings")
            listing_section(full, total, 3 if quick else 5, "first (the file parsed)")
            memo_cost(photo, rounds)
            recognition_section(servers, photo, rounds)
            listing_section(full, total, 2, "first after 4a's writes")
        finally:
            for server in servers.values():
                server.close()


# -- main ------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer frames, requests, sightings")
    parser.add_argument("--every", type=int, help="every Nth video frame (default 2; quick 8)")
    parser.add_argument("--skip-costs", action="store_true")
    args = parser.parse_args(argv)
    every = args.every or (8 if args.quick else 2)
    store = ModelCache()
    root = evalset.fetch(store, kind=None)
    print(f"# The memory of faces seen; {cpu_name()}; recognition on 1 worker, 2 threads")
    config = RuntimeConfig(workers=1, intra_op_threads=2)
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(store, config, gallery=Gallery(Path(tmp) / "gallery.json"))
        with engine:
            engine.runtime.remember_faces = True
            faces, labelled = collect(engine, root, every)
            grouping_section(faces, 5 if args.quick else 20)
            naming_section(engine, faces)
            gate_section(faces, labelled)
    if not args.skip_costs:
        photo = samples.fetch(store) / FIVE
        costs_section(faces, photo.read_bytes(), args.quick)


if __name__ == "__main__":
    main()
