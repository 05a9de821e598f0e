"""The console's side of the memory of faces seen, over real HTTP with the real models and
photos and a signed-in session: the groups of unknown faces with their pictures, named
(and "maybe NAME" accepted), merged, moved out, forgotten; each person's "last seen" and
history, "not NAME", and a rename that takes the history along. The browser test
(test_console_browser) drives the page itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import Answer, LiveServer
from test_console import PASSWORD, Browser

from mlapi.config import ServerConfig
from mlapi.engine import Engine
from mlapi.images import decode
from mlapi.sightings.settings import FaceMemory
from mlapi.store import ModelCache
from mlapi.web.state import SERVER

FIVE = "face_detection_input.jpg"  # five men in a row


@pytest.fixture
def server(store: ModelCache, tmp_path: Path) -> Iterator[LiveServer]:
    with Engine(store) as engine:
        live = LiveServer(engine, tmp_path / "data", memory=FaceMemory(sightings_interval=0))
        live.users.add("alice", PASSWORD)
        live.key = live.users.create_key("alice", "doorbell")
        try:
            yield live
        finally:
            live.stop()


def recognise(server: LiveServer, photo: Path) -> list[dict[str, Any]]:
    """The photo through recognition as a camera would send it; its faces then kept."""
    answer = server.upload(
        "/api/v1/detect",
        {"image": photo.read_bytes()},
        fields={"models": "recognize", "source": "front door"},
        headers={"X-API-Key": server.key},
    )
    assert answer.status == 200, answer.body
    server.app[SERVER].recorder.flush()  # type: ignore[union-attr]
    faces: list[dict[str, Any]] = answer.json()["detections"]
    return faces


def ok(answer: Answer) -> dict[str, Any]:
    assert answer.status == 200, answer.body
    found: dict[str, Any] = answer.json()
    return found


def groups(browser: Browser, query: str = "") -> list[dict[str, Any]]:
    clusters: list[dict[str, Any]] = ok(browser.call("GET", f"/console/api/unknown{query}"))[
        "clusters"
    ]
    return clusters


def test_unknown_faces_named_merged_forgotten_and_a_persons_history(
    server: LiveServer, photos: Path
) -> None:
    recognise(server, photos / FIVE)
    faces = recognise(server, photos / FIVE)  # the same five men again: each joins his own
    browser = Browser(server)
    assert browser.sign_in().status == 200
    listed = ok(browser.call("GET", "/console/api/unknown"))
    assert listed["total"] == 5 and listed["unknown_faces"] == 10 and listed["remembering"]
    assert sorted(c["count"] for c in listed["clusters"]) == [2] * 5
    face = listed["clusters"][0]["sightings"][0]
    assert face["source"] == "front door" and face["client"] == "alice"
    assert face["picture"] == f"/console/api/sightings/{face['id']}/picture"

    # The pictures are the session's only: private to this browser, refused to a key.
    picture = browser.call("GET", face["picture"])
    assert picture.status == 200 and picture.headers["Content-Type"] == "image/jpeg"
    assert picture.headers["Cache-Control"].startswith("private")
    assert decode(picture.body).pixels.shape == (96, 96, 3)
    assert server.call("GET", face["picture"]).status == 401
    assert server.call("GET", face["picture"], headers={"X-API-Key": server.key}).status == 401
    assert server.call("GET", "/console/api/unknown").status == 401

    # The leftmost man: one of his two faces moved out to a group of its own, the other
    # named. The moved face is then offered as "maybe Ahmed", and accepting it is one
    # naming more (the very same face: no second sample).
    leftmost = min(faces, key=lambda f: f["box"][0])["box"]
    his = next(c for c in listed["clusters"] if c["sightings"][0]["box"] == leftmost)
    moved = ok(browser.call("POST", f"/console/api/sightings/{his['sightings'][1]['id']}/move"))
    assert len(groups(browser)) == 6
    unsigned = browser.call(
        "POST", f"/console/api/unknown/{his['id']}/name", {"name": "Ahmed"}, csrf=False
    )
    assert unsigned.status == 403  # every change carries the session's CSRF token
    named = ok(browser.call("POST", f"/console/api/unknown/{his['id']}/name", {"name": "Ahmed"}))
    assert named["name"] == "Ahmed" and named["attributed"] == 1 and len(named["samples"]) == 1
    offered = next(c for c in groups(browser) if c["id"] == moved["cluster"])
    assert offered["maybe"]["name"] == "Ahmed" and offered["maybe"]["similarity"] > 0.9
    accepted = ok(
        browser.call("POST", f"/console/api/unknown/{offered['id']}/name", {"name": "Ahmed"})
    )
    assert accepted["attributed"] == 1 and accepted["samples"] == []
    assert len(groups(browser)) == 4

    # He is known from now on: seen once more, his history reaches back to before.
    before = time.time()
    names = [f["attributes"]["identity"] for f in recognise(server, photos / FIVE)]
    assert sorted(names) == ["Ahmed"] + ["unknown"] * 4
    people = ok(browser.call("GET", "/console/api/people"))["people"]
    (ahmed,) = [p for p in people if p["name"] == "Ahmed"]
    assert before - 1 <= ahmed["last_seen"] <= time.time() + 1
    history = ok(browser.call("GET", "/console/api/people/Ahmed/sightings"))["sightings"]
    assert len(history) == 3 and all(s["name"] == "Ahmed" for s in history)
    assert [s["seen"] for s in history] == sorted((s["seen"] for s in history), reverse=True)
    assert history[0]["similarity"] > 0.9 and history[0]["source"] == "front door"
    assert browser.call("GET", history[0]["picture"]).status == 200
    paged = ok(browser.call("GET", "/console/api/people/Ahmed/sightings?limit=1&offset=1"))
    assert [s["id"] for s in paged["sightings"]] == [history[1]["id"]]
    assert browser.call("GET", "/console/api/people/Ahmed/sightings?limit=x").status == 400

    # Renamed on the People page, his history goes with him.
    ok(browser.call("PUT", "/console/api/people/Ahmed", {"name": "Ahmed K"}))
    renamed = ok(browser.call("GET", "/console/api/people/Ahmed%20K/sightings"))["sightings"]
    assert [s["id"] for s in renamed] == [s["id"] for s in history]

    # "Not Ahmed K": the face is unknown again and the sample that named it is gone.
    fixed = ok(browser.call("POST", f"/console/api/sightings/{history[0]['id']}/not"))
    assert fixed["was"] == "Ahmed K" and fixed["removed_sample"] == named["samples"][0]
    assert any(c["id"] == fixed["cluster"] for c in groups(browser))
    again = browser.call("POST", f"/console/api/sightings/{history[0]['id']}/not")
    assert again.status == 404  # not a known person's sighting any more

    # Two groups merged; a face of the merged group forgotten; a whole group forgotten.
    first, second, third, *_ = [c["id"] for c in groups(browser) if c["count"] == 3]
    assert ok(browser.call("POST", "/console/api/unknown/merge", {"clusters": [first, second]}))[
        "cluster"
    ] == first  # fmt: skip
    (merged,) = groups(browser, f"?cluster={first}")
    assert merged["count"] == 6 and len(merged["sightings"]) == 6
    gone = merged["sightings"][-1]["id"]
    assert ok(browser.call("DELETE", f"/console/api/sightings/{gone}")) == {"removed": gone}
    assert browser.call("GET", f"/console/api/sightings/{gone}/picture").status == 404
    assert groups(browser, f"?cluster={first}")[0]["count"] == 5
    assert ok(browser.call("DELETE", f"/console/api/unknown/{third}")) == {"removed": 3}
    assert all(c["id"] != third for c in groups(browser))
    assert browser.call("DELETE", f"/console/api/unknown/{third}").status == 404

    # What is refused, in words.
    merge_one = browser.call("POST", "/console/api/unknown/merge", {"clusters": [first]})
    assert merge_one.status == 400 and "two or more" in merge_one.body.decode()
    nameless = browser.call("POST", f"/console/api/unknown/{first}/name", {"name": " "})
    assert nameless.status == 400
    slash = browser.call("POST", f"/console/api/unknown/{first}/name", {"name": "a/b"})
    assert slash.status == 400 and "without /" in slash.body.decode()
    assert browser.call("POST", "/console/api/unknown/NOT-HEX/name", {"name": "x"}).status == 404
    assert browser.call("GET", "/console/api/unknown?cluster=ffff").status == 404
    assert browser.call("GET", "/console/api/sightings/zz/picture").status == 404


def test_paging_the_groups(server: LiveServer, photos: Path) -> None:
    recognise(server, photos / FIVE)
    browser = Browser(server)
    browser.sign_in()
    every = groups(browser)
    page = ok(browser.call("GET", "/console/api/unknown?limit=2&offset=1&best=1"))
    assert page["total"] == 5 and [c["id"] for c in page["clusters"]] == [
        c["id"] for c in every[1:3]
    ]
    assert all(len(c["sightings"]) == 1 for c in page["clusters"])
    people = ok(browser.call("GET", "/console/api/people"))
    assert people["people"] == []


def test_a_server_that_keeps_no_faces_says_so(tmp_path: Path) -> None:
    with Engine(ModelCache(tmp_path / "cache")) as engine:
        live = LiveServer(
            engine,
            tmp_path / "data",
            ServerConfig(models=()),
            memory=FaceMemory(no_face_memory=True),
        )
        try:
            live.users.add("alice", PASSWORD)
            browser = Browser(live)
            browser.sign_in()
            listed = ok(browser.call("GET", "/console/api/unknown"))
            assert listed["clusters"] == [] and listed["remembering"] is False
            assert ok(browser.call("GET", "/console/api/people/Ada/sightings"))["sightings"] == []
        finally:
            live.stop()
