"""The memory of faces seen on a real server with the real models and photos: unknown faces
kept and grouped, named once (then recognised, their history reaching back), corrected,
forgotten; every dialect that recognises feeds it; the quality gate; off means off."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from servers import Answer, LiveServer

from mlapi.engine import Engine
from mlapi.images import decode, encode_jpeg
from mlapi.sightings.settings import FaceMemory
from mlapi.store import ModelCache
from mlapi.stores import open_stores
from mlapi.web.state import SERVER

FIVE = "face_detection_input.jpg"  # five men in a row
# Every sighting kept (no pause between the same face from the same source) for the tests.
MEMORY = FaceMemory(sightings_interval=0)


@pytest.fixture
def server(store: ModelCache, tmp_path: Path) -> Iterator[LiveServer]:
    with Engine(store) as engine:
        live = LiveServer(engine, tmp_path / "data", memory=MEMORY)
        live.users.add("door", "camera at the door")
        live.key = live.users.create_key("door", "doorbell")
        yield live
        live.stop()


def call(server: LiveServer, method: str, path: str, document: Any = None) -> Answer:
    headers = {"X-API-Key": server.key}
    body = None
    if document is not None:
        body = json.dumps(document).encode()
        headers["Content-Type"] = "application/json"
    return server.call(method, path, body, headers)


def recognise(server: LiveServer, data: bytes, source: str = "door") -> list[dict[str, Any]]:
    answer = server.upload(
        "/api/v1/detect",
        {"image": data},
        fields={"models": "recognize", "source": source},
        headers={"X-API-Key": server.key},
    )
    assert answer.status == 200, answer.body
    server.app[SERVER].recorder.flush()  # type: ignore[union-attr]
    faces: list[dict[str, Any]] = answer.json()["detections"]
    return faces


def unknown(server: LiveServer) -> list[dict[str, Any]]:
    answer = call(server, "GET", "/api/v1/faces/unknown")
    assert answer.status == 200, answer.body
    clusters: list[dict[str, Any]] = answer.json()["clusters"]
    return clusters


def test_unknown_faces_are_kept_grouped_named_once_and_then_recognised(
    server: LiveServer, photos: Path
) -> None:
    five = (photos / FIVE).read_bytes()
    faces = recognise(server, five)
    assert [f["attributes"]["identity"] for f in faces] == ["unknown"] * 5
    clusters = unknown(server)
    assert len(clusters) == 5 and all(c["count"] == 1 for c in clusters)
    recognise(server, five)  # the same five again: each joins its own group
    clusters = unknown(server)
    assert sorted(c["count"] for c in clusters) == [2] * 5
    first = clusters[0]["sightings"][0]
    assert first["source"] == "door" and len(first["box"]) == 4 and 0 < first["quality"] <= 1
    picture = server.call("GET", first["picture"], headers={"X-API-Key": server.key})
    assert picture.status == 200 and decode(picture.body).pixels.shape == (96, 96, 3)

    # The leftmost man gets a name: his best face becomes a sample (the second is the very
    # same face, so it is skipped), and both sightings are his.
    leftmost = min(faces, key=lambda f: f["box"][0])["box"]
    group = next(c for c in clusters if c["sightings"][0]["box"] == leftmost)
    named = call(server, "POST", f"/api/v1/faces/unknown/{group['id']}/name", {"name": "Ahmed"})
    assert named.status == 200, named.body
    assert named.json()["attributed"] == 2 and len(named.json()["samples"]) == 1
    assert len(unknown(server)) == 4

    again = recognise(server, five)
    names = [f["attributes"]["identity"] for f in sorted(again, key=lambda f: f["box"][0])]
    assert names == ["Ahmed"] + ["unknown"] * 4
    seen = call(server, "GET", "/api/v1/faces/people/Ahmed/sightings").json()["sightings"]
    assert len(seen) == 3  # twice before he had a name, once since
    assert [s["seen"] for s in seen] == sorted((s["seen"] for s in seen), reverse=True)
    assert all(s["source"] == "door" for s in seen)

    # "Not Ahmed": the sample that named him goes, and the face is unknown again.
    fixed = call(server, "POST", f"/api/v1/faces/sightings/{seen[0]['id']}/not")
    assert fixed.status == 200 and fixed.json()["was"] == "Ahmed"
    assert fixed.json()["removed_sample"] == named.json()["samples"][0]
    after = recognise(server, five)
    assert all(f["attributes"]["identity"] == "unknown" for f in after)


def test_merge_move_out_and_forget(server: LiveServer, photos: Path) -> None:
    recognise(server, (photos / FIVE).read_bytes())
    ids = [c["id"] for c in unknown(server)]
    merged = call(server, "POST", "/api/v1/faces/unknown/merge", {"clusters": ids[:2]})
    assert merged.status == 200 and merged.json()["cluster"] == ids[0]
    both = call(server, "GET", f"/api/v1/faces/unknown?cluster={ids[0]}").json()["clusters"][0]
    assert both["count"] == 2
    moved = call(server, "POST", f"/api/v1/faces/sightings/{both['sightings'][1]['id']}/move")
    assert moved.status == 200 and len(unknown(server)) == 5
    assert call(server, "DELETE", f"/api/v1/faces/unknown/{ids[0]}").json() == {"removed": 1}
    assert len(unknown(server)) == 4
    assert call(server, "DELETE", f"/api/v1/faces/unknown/{ids[0]}").status == 404
    assert call(server, "POST", "/api/v1/faces/unknown/merge", {"clusters": [ids[2]]}).status == 400
    assert call(server, "POST", "/api/v1/faces/unknown/nothex!/name", {"name": "x"}).status == 404
    assert call(server, "POST", f"/api/v1/faces/unknown/{ids[2]}/name", {"name": ""}).status == 400


def test_every_dialect_that_recognises_feeds_the_memory(server: LiveServer, photos: Path) -> None:
    couple = (photos / "gender_detection_input.jpg").read_bytes()
    deepstack = server.upload(
        "/v1/vision/face/recognize", {"image": couple}, fields={"api_key": server.key}
    )
    assert deepstack.status == 200
    compreface = server.upload(
        "/api/v1/recognition/recognize", {"file": couple}, headers={"x-api-key": server.key}
    )
    assert compreface.status == 200, compreface.body
    server.app[SERVER].recorder.flush()  # type: ignore[union-attr]
    routes = {s["route"] for c in unknown(server) for s in c["sightings"]}
    assert routes == {"/v1/vision/face/recognize", "/api/v1/recognition/recognize"}
    assert {s["client"] for c in unknown(server) for s in c["sightings"]} == {"door"}


def test_faces_too_small_are_not_kept(server: LiveServer, photos: Path) -> None:
    rgb = decode((photos / FIVE).read_bytes()).pixels
    small = encode_jpeg(np.ascontiguousarray(rgb[::8, ::8]))  # faces about 20 px wide
    faces = recognise(server, small)
    assert faces and all(f["box"][2] - f["box"][0] < 48 for f in faces)
    assert unknown(server) == []
    metrics = server.call("GET", "/metrics", headers={"X-API-Key": server.key}).body.decode()
    assert f'mlapi_face_sightings_total{{outcome="refused"}} {len(faces)}' in metrics
    assert 'mlapi_face_sightings_total{outcome="kept"} 0' in metrics


def test_off_keeps_nothing(store: ModelCache, tmp_path: Path, photos: Path) -> None:
    with Engine(store) as engine:
        live = LiveServer(engine, tmp_path / "data", memory=FaceMemory(no_face_memory=True))
        try:
            live.users.add("door", "camera at the door")
            live.key = live.users.create_key("door", "doorbell")
            answer = live.upload(
                "/api/v1/detect",
                {"image": (photos / FIVE).read_bytes()},
                fields={"models": "recognize"},
                headers={"X-API-Key": live.key},
            )
            assert answer.status == 200 and live.app[SERVER].recorder is None
            assert unknown(live) == []
        finally:
            live.stop()
    assert open_stores(tmp_path / "data").sightings.clusters() == []


def test_replicas_on_one_database_share_what_they_saw(
    store: ModelCache, tmp_path: Path, photos: Path, database: str
) -> None:
    """A face seen through one replica is listed, named and remembered through the other."""
    with Engine(store) as one_engine, Engine(store) as other_engine:
        one = LiveServer(
            one_engine, tmp_path / "a", stores=open_stores(database=database), memory=MEMORY
        )
        other = LiveServer(
            other_engine, tmp_path / "b", stores=open_stores(database=database), memory=MEMORY
        )
        try:
            one.users.add("door", "camera at the door")
            one.key = other.key = one.users.create_key("door", "doorbell")
            couple = (photos / "gender_detection_input.jpg").read_bytes()
            assert len(recognise(one, couple, source="garden")) == 2
            clusters = unknown(other)
            assert len(clusters) == 2 and clusters[0]["sightings"][0]["source"] == "garden"
            picture = clusters[0]["sightings"][0]["picture"]
            assert other.call("GET", picture, headers={"X-API-Key": other.key}).status == 200
            named = call(other, "POST", f"/api/v1/faces/unknown/{clusters[0]['id']}/name",
                         {"name": "Kim"})  # fmt: skip
            assert named.status == 200, named.body
            assert len(unknown(one)) == 1
            seen = call(one, "GET", "/api/v1/faces/people/Kim/sightings").json()["sightings"]
            assert [s["source"] for s in seen] == ["garden"]
        finally:
            one.stop()
            other.stop()
