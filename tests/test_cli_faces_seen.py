"""The memory of faces seen from the command line, as a person uses it, with the real models
on the real photos: `mlapi faces unknown list|show|name|merge|move|forget`, `mlapi faces
seen NAME`, `mlapi faces not SIGHTING`, and `mlapi stream -m recognize` recording what it
sees."""

from __future__ import annotations

import getpass
import json
import os
import re
from pathlib import Path
from typing import Any

import cv2
import pytest
from helpers import on_terminal, run_mlapi
from servers import LiveServer

from mlapi.engine import Engine
from mlapi.images import decode
from mlapi.sightings.recorder import Recorder
from mlapi.sightings.settings import FaceMemory
from mlapi.store import ModelCache
from mlapi.stores import open_stores
from mlapi.stream.sources import source_name
from mlapi.web.state import SERVER

FIVE = "face_detection_input.jpg"  # five men in a row


def ok(*args: str, **env: str) -> str:
    done = run_mlapi(list(args), **env)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def as_json(*args: str) -> Any:
    done = run_mlapi([*args, "--json"])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def identities(photo: Path) -> list[str]:
    """Who `mlapi detect -m recognize` names in the photo, left to right."""
    found = as_json_detect(photo)
    faces = sorted(found["detections"], key=lambda d: d["box"][0])
    return [f["attributes"]["identity"] for f in faces]


def as_json_detect(photo: Path) -> Any:
    done = run_mlapi(["detect", "-m", "recognize", str(photo)])
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture
def seen_twice(store: ModelCache, photos: Path) -> Path:
    """The data folder, after recognition saw the five men twice at the door (as a server
    records them: the recorder on the folder's stores)."""
    data = Path(os.environ["MLAPI_DATA_DIR"])
    stores = open_stores(data)
    with Engine(store, gallery=lambda: stores.faces) as engine:
        engine.runtime.remember_faces = True
        recorder = Recorder(stores.sightings, FaceMemory(sightings_interval=0), pause=0)
        plan = engine.make_plan(["recognize"], {})
        for _ in range(2):
            recorder.offer(
                engine.run_here((photos / FIVE).read_bytes(), plan), "test", "me", "door"
            )
        recorder.close()
    assert recorder.counts["kept"] == 10
    return data


def test_unknown_faces_listed_shown_named_then_recognised_and_their_history(
    seen_twice: Path, photos: Path, tmp_path: Path
) -> None:
    listing = as_json("faces", "unknown", "list")
    assert listing["total"] == 5 and listing["unknown_faces"] == 10
    clusters = listing["clusters"]
    assert sorted(c["count"] for c in clusters) == [2] * 5
    table = ok("faces", "unknown", "list")
    assert all(c["id"] in table for c in clusters) and "door" in table
    assert "5 of 5 group(s), 10 unknown face(s)" in table and "name ID NAME" in table

    # The leftmost man's group: every face of it, their pictures written to a folder.
    leftmost = min(clusters, key=lambda c: c["sightings"][0]["box"][0])
    shown = ok("faces", "unknown", "show", leftmost["id"], "--save", str(tmp_path / "pics"))
    ids = [s["id"] for s in as_json("faces", "unknown", "show", leftmost["id"])["sightings"]]
    assert len(ids) == 2 and all(i in shown for i in ids)
    assert "door" in shown and "2 picture(s) written" in shown
    for i in ids:
        assert decode((tmp_path / "pics" / f"{i}.jpg").read_bytes()).pixels.shape == (96, 96, 3)

    # Named once: his best face becomes a sample (the other is the very same face), both
    # faces are his, and recognition names him from then on.
    named = ok("faces", "unknown", "name", leftmost["id"], "Ahmed")
    assert "1 sample(s) added" in named and "2 face(s) attributed" in named
    assert as_json("faces", "unknown", "list")["total"] == 4
    assert identities(photos / FIVE) == ["Ahmed"] + ["unknown"] * 4
    assert "Ahmed" in ok("faces", "list")

    history = as_json("faces", "seen", "Ahmed")["sightings"]
    assert sorted(s["id"] for s in history) == sorted(ids)
    assert all(s["name"] == "Ahmed" and s["source"] == "door" for s in history)
    assert [s["seen"] for s in history] == sorted((s["seen"] for s in history), reverse=True)
    page = ok("faces", "seen", "Ahmed", "--limit", "1")
    assert history[0]["id"] in page and history[1]["id"] not in page
    assert "--offset 1" in page and "mlapi faces not SIGHTING" in page
    assert history[1]["id"] in ok("faces", "seen", "Ahmed", "--limit", "1", "--offset", "1")

    # "Not Ahmed": the sample that named him goes, the face is unknown again.
    fixed = ok("faces", "not", history[0]["id"])
    assert "is not Ahmed" in fixed and "removed sample" in fixed
    assert identities(photos / FIVE) == ["unknown"] * 5
    assert as_json("faces", "unknown", "list")["total"] == 5


def test_merge_move_forget_and_forget_all(seen_twice: Path) -> None:
    ids = [c["id"] for c in as_json("faces", "unknown", "list")["clusters"]]
    assert f"merged 2 groups into {ids[0]}" in ok("faces", "unknown", "merge", ids[0], ids[1])
    merged = as_json("faces", "unknown", "show", ids[0])
    assert merged["count"] == 4
    moved = ok("faces", "unknown", "move", merged["sightings"][0]["id"])
    assert "into group" in moved and as_json("faces", "unknown", "list")["total"] == 5
    assert "3 face(s)" in ok("faces", "unknown", "forget", ids[0])
    assert as_json("faces", "unknown", "list")["unknown_faces"] == 7

    # Every one, after asking: without a terminal to ask on, --yes is needed.
    refused = run_mlapi(["faces", "unknown", "forget", "--all"])
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert "forgot 7 face sighting(s)" in ok("faces", "unknown", "forget", "--all", "--yes")
    assert as_json("faces", "unknown", "list")["clusters"] == []
    assert "no unknown faces" in ok("faces", "unknown", "list")
    assert not list((seen_twice / "sightings").glob("*.jpg"))  # the pictures went too


def test_tables_fit_a_terminal_and_never_cut_an_id_or_a_time(seen_twice: Path) -> None:
    clusters = as_json("faces", "unknown", "list")["clusters"]
    faces = as_json("faces", "unknown", "show", clusters[0]["id"])["sightings"]
    for args, ids in (
        (["faces", "unknown", "list"], [c["id"] for c in clusters]),
        (["faces", "unknown", "show", clusters[0]["id"]], [s["id"] for s in faces]),
    ):
        shown = on_terminal(args, 80)
        assert all(len(line) <= 80 for line in shown.splitlines()), shown
        assert "left out at 80 columns: --wide shows them" in shown
        assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", shown)
        assert all(i in shown for i in ids)
        assert "left out" not in on_terminal([*args, "--wide"], 80)


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["faces", "unknown", "show", "0123456789ab"], "no group", 1),
        (["faces", "unknown", "name", "0123456789ab", "Bob"], "no group", 1),
        (["faces", "unknown", "forget", "0123456789ab"], "no group", 1),
        (["faces", "unknown", "merge", "0123456789ab"], "two or more", 2),
        (["faces", "unknown", "forget"], "one group ID, or --all", 2),
        (["faces", "not", "0123456789ab"], "sighting", 1),
        (["faces", "seen", "Nobody"], "nobody called 'Nobody'", 1),
    ],
)
def test_mistakes_are_clear_errors(args: list[str], message: str, code: int) -> None:
    done = run_mlapi(args)
    assert done.returncode == code, done.stderr
    assert done.stderr.startswith("error:") and message in done.stderr
    assert "Traceback" not in done.stderr


def test_stream_remembers_the_faces_it_recognises(photos: Path, tmp_path: Path) -> None:
    path = tmp_path / "door.avi"
    image = cv2.imread(str(photos / FIVE))
    assert image is not None
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter.fourcc(*"MJPG"), 5, (image.shape[1], image.shape[0])
    )
    for _ in range(4):
        writer.write(image)
    writer.release()

    done = run_mlapi(["stream", str(path), "-m", "recognize"])
    assert done.returncode == 0, done.stderr
    assert "5 face sighting(s) kept" in done.stderr  # the same faces again within 10 s: once
    clusters = as_json("faces", "unknown", "list")["clusters"]
    assert len(clusters) == 5 and all(c["count"] == 1 for c in clusters)
    faces = [s for c in clusters for s in c["sightings"]]
    assert {(s["source"], s["route"], s["client"]) for s in faces} == {
        (str(path), "stream", getpass.getuser())
    }

    # Each face each time with no pause between sightings; none with the memory off or
    # without recognition.
    ok("stream", str(path), "-m", "recognize", MLAPI_SIGHTINGS_INTERVAL="0")
    assert as_json("faces", "unknown", "list")["unknown_faces"] == 5 + 4 * 5
    ok("stream", str(path), "-m", "recognize", MLAPI_NO_FACE_MEMORY="1")
    ok("stream", str(path), "-m", "faces", MLAPI_SIGHTINGS_INTERVAL="0")
    assert as_json("faces", "unknown", "list")["unknown_faces"] == 25


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("0", "0"),
        ("door.mp4", "door.mp4"),
        ("rtsp://admin:secret@10.0.0.5:554/Streaming/101", "rtsp://10.0.0.5:554/Streaming/101"),
        ("rtsp://cam.lan/live?channel=2&user=admin&password=x", "rtsp://cam.lan/live?channel=2"),
        ("http://u:p@[fd00::5]:8080/video.mjpg", "http://[fd00::5]:8080/video.mjpg"),
    ],
)
def test_a_streams_source_is_named_without_credentials(spec: str, name: str) -> None:
    assert source_name(spec) == name


def test_on_postgresql_the_same_commands_and_stream_record_there(
    photos: Path, database: str, tmp_path: Path
) -> None:
    video = tmp_path / "door.avi"
    image = cv2.imread(str(photos / FIVE))
    assert image is not None
    writer = cv2.VideoWriter(
        str(video), cv2.VideoWriter.fourcc(*"MJPG"), 5, (image.shape[1], image.shape[0])
    )
    writer.write(image)
    writer.release()
    ok("stream", str(video), "-m", "recognize", MLAPI_DATABASE_URL=database)
    assert as_json("faces", "unknown", "list")["clusters"] == []  # nothing in the data folder

    listed = run_mlapi(["faces", "unknown", "list", "--json", "--database", database])
    clusters = json.loads(listed.stdout)["clusters"]
    assert len(clusters) == 5
    assert {s["source"] for c in clusters for s in c["sightings"]} == {str(video)}
    leftmost = min(clusters, key=lambda c: c["sightings"][0]["box"][0])
    named = ok("faces", "unknown", "name", leftmost["id"], "Ahmed", "--database", database)
    assert "1 sample(s) added" in named and "1 face(s) attributed" in named
    assert "Ahmed" in ok("faces", "list", "--database", database)
    assert str(video) in ok("faces", "seen", "Ahmed", "--database", database)
    done = ok("faces", "unknown", "forget", "--all", "--yes", MLAPI_DATABASE_URL=database)
    assert "forgot 5 face sighting(s)" in done
    assert open_stores(database=database).sightings.clusters() == []


def test_stream_on_a_server_names_its_source_to_the_server(
    store: ModelCache, photos: Path, tmp_path: Path
) -> None:
    video = tmp_path / "door.avi"
    image = cv2.imread(str(photos / FIVE))
    assert image is not None
    writer = cv2.VideoWriter(
        str(video), cv2.VideoWriter.fourcc(*"MJPG"), 5, (image.shape[1], image.shape[0])
    )
    writer.write(image)
    writer.release()
    with Engine(store) as engine:
        server = LiveServer(engine, tmp_path / "server")
        try:
            server.users.add("cam", "camera at the door")
            key = server.users.create_key("cam", "stream")
            done = run_mlapi(
                ["stream", str(video), "-m", "recognize", "--server", server.url],
                MLAPI_API_KEY=key,
            )
            assert done.returncode == 0, done.stderr
            recorder = server.app[SERVER].recorder
            assert recorder is not None and recorder.flush()
            faces = [s for c in server.stores.sightings.clusters() for s in c.sightings]
            assert len(faces) == 5
            assert {(s.source, s.client) for s in faces} == {(str(video), "cam")}
        finally:
            server.stop()
    assert as_json("faces", "unknown", "list")["clusters"] == []  # none kept here too
