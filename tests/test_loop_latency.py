"""Nothing input-sized on the event loop, with PostgreSQL too (issue 31, item 7): a real
server on loopback with a gallery of 30,000 samples (dlib's 128-d unit vectors, stored as
`mlapi faces add` stores them) answers /health within milliseconds while it re-reads the
gallery for the first recognition after a change, and while ten console listings run.

The detectors that find the face and make its faceprint are stand-ins (big_gallery.py);
recognition itself, the gallery and the stores are the real ones. Each test prints its
figures: /health's slowest and median answer, and how long the work took. Before, the
first recognition after a change held /health for 1 to 2 s (PostgreSQL: psycopg made
30,000 lists of floats in one call holding the GIL; TinyDB: one json.loads of 50 MB), and
ten listings for over a second (3 MB of JSON each, built on the loop)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import services
from big_gallery import (
    PER_PERSON,
    PHOTO,
    REGISTRY,
    SAMPLES,
    SOUGHT_NAME,
    VECTORS,
    fill_database,
    write_file,
)
from servers import LiveServer, multipart

from mlapi.config import RuntimeConfig, ServerConfig
from mlapi.engine import Engine
from mlapi.store import ModelCache
from mlapi.stores import open_stores

HEALTH_MS = 250  # the aim is 50 ms; the margin is for a busy two-core machine (before: 0.9-1.4 s)
PASSWORD = "loop latency password"
pytestmark = pytest.mark.usefixtures("no_server_errors")


@dataclass
class Big:
    server: LiveServer
    kind: str


@pytest.fixture(scope="module", params=["postgresql", "tinydb"])
def big(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Big]:
    """A server on a gallery of 30,000 samples (3,000 people), in PostgreSQL or a file."""
    folder = tmp_path_factory.mktemp(request.param)
    if request.param == "postgresql":
        url = services.new_database(request.getfixturevalue("postgres"))
        stores = open_stores(database=url)  # the schema
        fill_database(url)
    else:
        write_file(folder / "data")
        stores = open_stores(folder / "data")
    config = RuntimeConfig(workers=1)
    with Engine(ModelCache(folder / "cache"), config, REGISTRY, stores.faces) as engine:
        live = LiveServer(engine, folder / "data", ServerConfig(models=()), stores)
        live.users.add("alice", PASSWORD)
        live.key = live.users.create_key("alice", "tests")
        try:
            yield Big(live, request.param)
        finally:
            live.stop()
            stores.close()


@dataclass
class Figures:
    health_ms: list[float]
    work_s: float

    def line(self, what: str) -> str:
        worst, median = max(self.health_ms), statistics.median(self.health_ms)
        return (
            f"{what}: {self.work_s:.2f} s; /health max {worst:.1f} ms, median {median:.1f} ms "
            f"({len(self.health_ms)} probes)"
        )


# The prober is another process: a thread of this one would be starved of the GIL along
# with the server's loop, between its probes, where its clock does not see it.
PROBE = """
import http.client, json, select, sys, time
conn = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=60)
times, deadline = [], time.monotonic() + 120
print("ready", flush=True)
while not select.select([sys.stdin], [], [], 0)[0] and time.monotonic() < deadline:
    started = time.perf_counter()
    conn.request("GET", "/health")
    answer = conn.getresponse()
    answer.read()
    times.append((time.perf_counter() - started) * 1000 if answer.status == 200 else 1e9)
    time.sleep(0.01)
print(json.dumps(times))
"""


def while_probing(server: LiveServer, work: Callable[[], object]) -> Figures:
    """/health every 10 ms (one kept-alive connection, from another process) while `work()`
    runs."""
    command = [sys.executable, "-c", PROBE, str(server.port)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as probe:
        assert probe.stdout is not None and probe.stdout.readline().strip() == "ready"
        time.sleep(0.1)  # a few probes before the work starts
        started = time.perf_counter()
        try:
            work()
        finally:
            spent = time.perf_counter() - started
            time.sleep(0.05)
            out, _ = probe.communicate("stop\n", timeout=60)
    return Figures(json.loads(out), spent)


def recognise(server: LiveServer) -> dict[str, Any]:
    body, content_type = multipart({"image": PHOTO}, {})
    headers = {"Content-Type": content_type, "X-API-Key": server.key}
    answer = server.call("POST", "/v1/vision/face/recognize", body, headers)
    assert answer.status == 200, answer.body
    document: dict[str, Any] = answer.json()
    return document


def test_the_first_recognition_after_a_change_leaves_the_loop_free(big: Big) -> None:
    server = big.server
    assert recognise(server)["predictions"][0]["userid"] == SOUGHT_NAME  # loaded, warm
    # Another process adds a sample (the CLI, another replica): the gallery is re-read.
    other = open_stores(server.data_dir) if big.kind == "tinydb" else None
    (other or server.stores).faces.add("newcomer", VECTORS[0], "dlib")
    found: list[dict[str, Any]] = []
    figures = while_probing(server, lambda: found.append(recognise(server)))
    print("\n" + figures.line(f"first recognition after a change, {big.kind}, {SAMPLES} samples"))
    assert found[0]["predictions"][0]["userid"] == SOUGHT_NAME
    worst = max(figures.health_ms)
    assert worst < HEALTH_MS, figures.line("recognition")


def sign_in(server: LiveServer) -> str:
    body = json.dumps({"username": "alice", "password": PASSWORD}).encode()
    answer = server.call("POST", "/console/api/signin", body, {"Content-Type": "application/json"})
    assert answer.status == 200, answer.body
    return answer.headers["Set-Cookie"].split(";")[0]


def test_ten_console_listings_leave_the_loop_free(big: Big) -> None:
    server = big.server
    cookie = sign_in(server)
    sizes: list[int] = []

    def listing() -> None:
        answer = server.call("GET", "/console/api/people", headers={"Cookie": cookie})
        assert answer.status == 200
        sizes.append(len(answer.body))

    def ten() -> None:
        threads = [threading.Thread(target=listing) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    listing()  # one first: the store's own first read is not what is measured
    figures = while_probing(server, ten)
    what = f"ten listings of {sizes[-1] / 1e6:.2f} MB, {big.kind}, {SAMPLES} samples"
    print("\n" + figures.line(what))
    assert len(sizes) == 11
    worst = max(figures.health_ms)
    assert worst < HEALTH_MS, figures.line("listings")
    first = json.loads(server.call("GET", "/console/api/people", headers={"Cookie": cookie}).body)
    assert first["total"] in (SAMPLES // PER_PERSON, SAMPLES // PER_PERSON + 1)  # newcomer?
    assert len(first["people"]) == first["limit"] < first["total"]


# -- paging ------------------------------------------------------------------------------
@pytest.fixture
def small(tmp_path: Path) -> Iterator[LiveServer]:
    with Engine(ModelCache(tmp_path / "cache"), registry=REGISTRY) as engine:
        live = LiveServer(engine, tmp_path / "data", ServerConfig(models=()))
        live.users.add("alice", PASSWORD)
        try:
            yield live
        finally:
            live.stop()


def test_the_people_listing_comes_in_pages(small: LiveServer) -> None:
    faces = small.stores.faces
    for i in range(7):
        for _ in range(1 + i % 3):
            faces.add(f"p{i}", VECTORS[i], "dlib")
    faces.create("nobody yet")
    cookie = sign_in(small)

    def page(query: str) -> Any:
        answer = small.call("GET", f"/console/api/people{query}", headers={"Cookie": cookie})
        return answer.status, answer.json()

    status, whole = page("")
    assert status == 200 and whole["total"] == 8 and whole["offset"] == 0
    everyone = [p["name"] for p in whole["people"]]
    assert everyone == ["nobody yet", *(f"p{i}" for i in range(7))]
    assert [len(p["samples"]) for p in whole["people"]] == [0, *(1 + i % 3 for i in range(7))]
    walked: list[str] = []
    for offset in range(0, 10, 3):
        status, part = page(f"?offset={offset}&limit=3")
        assert status == 200 and part["total"] == 8 and part["limit"] == 3
        walked += [p["name"] for p in part["people"]]
    assert walked == everyone
    assert page("?offset=8")[1]["people"] == []
    assert page("?limit=1000000")[1]["limit"] == 1000  # cut to the most a page holds
    for bad in ("?offset=-1", "?limit=x", "?offset=1.5", "?limit=%C2%B2"):
        assert page(bad)[0] == 400, bad
    documented = small.call("GET", "/api/v1/openapi.json").json()
    listed = documented["paths"]["/console/api/people"]["get"]["parameters"]
    assert {p["name"] for p in listed} == {"offset", "limit"}
