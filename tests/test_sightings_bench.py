"""bench/sightings.py, the measures of the memory of faces seen (issue 34): its scoring of
groups (fast tier), and that `--quick` runs on the real models and photos and prints every
table (models tier; the figures themselves are the bench's, not the test's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from mlapi.similarity import normalise
from mlapi.store import ModelCache

BENCH = Path(__file__).parent.parent / "bench"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    sys.path.insert(0, str(BENCH))
    try:
        import sightings as module  # bench/sightings.py
    finally:
        sys.path.remove(str(BENCH))
    assert isinstance(module, ModuleType)
    return module


def test_purity_and_completeness(bench: ModuleType) -> None:
    # a: 3 sightings in 2 groups, one of which also holds b's only sighting
    score = bench.score(["a", "a", "a", "b"], ["1", "1", "2", "2"])
    assert score.clusters == 2 and score.sightings == 4
    # group 2's majority is a tie, broken by the first seen (a): b is not pure there
    assert score.purity == pytest.approx(3 / 4)
    assert score.completeness == pytest.approx((2 + 1) / 4)
    assert score.per_person["a"] == (3, 1.0, pytest.approx(2 / 3), 2)
    assert score.per_person["b"] == (1, 0.0, 1.0, 1)


def test_grouping_by_centroid_and_by_best_member(bench: ModuleType) -> None:
    rng = np.random.default_rng(1)
    people = normalise(rng.normal(0, 1, (3, 128)))  # unrelated: cosine about 0
    vectors = [normalise(people[i % 3] + rng.normal(0, 0.02, 128)) for i in range(9)]
    for linkage in ("centroid", "best member"):
        groups = bench.grouped(vectors, "dlib", 0.67, linkage)
        assert groups[:3] == ["0", "1", "2"] and groups[3:] == groups[:3] * 2
    assert len(set(bench.grouped(vectors, "dlib", 1.0, "centroid"))) == 9  # nobody joins


def test_quick_run_prints_every_table(store: ModelCache) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH / "sightings.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    for row in (
        "## 1. Grouping",
        "| TinyDB store via the Recorder (dlib, join_at 0.67) |",
        "| person | sightings | clusters | purity | completeness |",
        "| dlib | centroid | 0.67 |",
        "| dlib | best member | 0.80 |",
        "| faceres | centroid | 0.67 |",
        "## 2. Naming",
        "| Barack Obama | obama.jpg, obama2.jpg",
        "| Jesper | movie.avi",
        "## 3. The quality gate",
        "| photos |",
        "| photos of no face (false faces) |",
        "| movie.avi frames |",
        "good faces (>= 48 px wide",
        "| where | person | box | width | sharpness | turn | score | reason |",
        "### 4a.",
        "| memory off (--no-face-memory) |",
        "| memory on (served defaults) |",
        "| memory on, every face kept, 2000 kept |",
        "| memory on (served defaults), 2000 kept |",
        "### 4b.",
        "| first (the file parsed) |",
        "### 4c.",
        "### 4d.",
        "| 256 |",
    ):
        assert row in out, f"{row!r} missing from:\n{out}"
    assert out.startswith("# The memory of faces seen; ")  # then the CPU's name
