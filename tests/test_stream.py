"""`mlapi stream` on a video made from the real photos, a live MJPEG stream on loopback
that drops and comes back, and a webhook receiver."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from aiohttp import web
from helpers import on_terminal

from mlapi.backends import Local
from mlapi.engine import Engine
from mlapi.errors import StreamError
from mlapi.render import FORMATS
from mlapi.result import dumps, result_to_dict
from mlapi.stream import ChangeTracker, Sampler, Stats, StreamConfig, run_stream
from mlapi.stream import Frame as StreamFrame

GROUP, COUPLE = "face_detection_input.jpg", "gender_detection_input.jpg"
SURE = {"objects": {"confidence": "0.6"}}  # only clear detections: stable frame to frame


def bgr(photos: Path, name: str) -> np.ndarray:
    """The photo fitted into a 640×424 grey frame, aspect kept."""
    image = cv2.imread(str(photos / name))
    assert image is not None
    scale = min(640 / image.shape[1], 424 / image.shape[0])
    small = cv2.resize(
        image,
        (round(image.shape[1] * scale), round(image.shape[0] * scale)),
        interpolation=cv2.INTER_AREA,
    )
    frame = np.full((424, 640, 3), 128, np.uint8)
    frame[: small.shape[0], : small.shape[1]] = small
    return frame


@pytest.fixture(scope="module")
def video(photos: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """30 frames at 10 fps: five men (0-9), the couple (10-19), an empty grey wall (20-29)."""
    path = tmp_path_factory.mktemp("video") / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 10, (640, 424))
    segments = [bgr(photos, GROUP), bgr(photos, COUPLE), np.full((424, 640, 3), 128, np.uint8)]
    for i in range(30):
        writer.write(segments[i // 10])
    writer.release()
    return path


def stream(
    engine: Engine,
    config: StreamConfig,
    models: list[str] | None = None,
    logged: list[str] | None = None,
) -> tuple[list[dict[str, Any]], Stats]:
    events: list[dict[str, Any]] = []
    options = {} if models else SURE
    detect = Local(engine, models or ["objects"], options)
    log = logged.append if logged is not None else (lambda text: None)
    with ThreadPoolExecutor(config.workers) as pool:
        stats = run_stream(
            config,
            detect,
            FORMATS["native"],
            pool.submit,
            lambda e: events.append(json.loads(e)),
            log,
        )
    return events, stats


def labels(event: dict[str, Any]) -> set[str]:
    return {d["label"] for d in event["result"]["detections"]}


def test_video_gives_the_expected_detections_at_the_expected_frames(
    engine: Engine, video: Path
) -> None:
    events, stats = stream(engine, StreamConfig(str(video), every=5))
    assert [e["frame"] for e in events] == [0, 5, 10, 15, 20, 25]
    assert [e["time"] for e in events] == pytest.approx([0, 0.5, 1.0, 1.5, 2.0, 2.5], abs=0.01)
    people = [len(e["result"]["detections"]) for e in events]
    assert people == [5, 5, 2, 2, 0, 0] and all(labels(e) <= {"person"} for e in events)
    assert (stats.read, stats.processed, stats.dropped) == (30, 6, 0)


def test_changes_only_emits_only_at_changes(engine: Engine, video: Path, tmp_path: Path) -> None:
    annotated = tmp_path / "annotated.avi"
    events, stats = stream(engine, StreamConfig(str(video), changes_only=True, annotate=annotated))
    assert [e["frame"] for e in events] == [0, 10, 20]
    assert stats.processed == 30 and stats.emitted == 3
    check = cv2.VideoCapture(str(annotated))
    assert int(check.get(cv2.CAP_PROP_FRAME_COUNT)) == 30


def test_fps_sampling_uses_stream_time(engine: Engine, video: Path) -> None:
    events, _ = stream(engine, StreamConfig(str(video), fps=2))
    assert [e["frame"] for e in events] == [0, 5, 10, 15, 20, 25]


def test_change_tracker_sees_moves_but_not_jitter() -> None:
    tracker = ChangeTracker(0.5)
    assert tracker.changed([("dog", [0, 0, 100, 100])])
    assert not tracker.changed([("dog", [2, 2, 102, 102])])  # jitter
    assert tracker.changed([("dog", [60, 60, 160, 160])])  # moved
    assert tracker.changed([("dog", [60, 60, 160, 160]), ("cat", [0, 0, 5, 5])])  # new label
    assert not Sampler(every=3).keep(StreamFrame(4, 0.4, np.zeros((1, 1, 3), np.uint8)))


class MjpegServer:
    """A camera on loopback: each connection streams `per_connection` frames, then drops."""

    def __init__(self, frames: list[bytes], per_connection: int, interval: float) -> None:
        self.frames, self.per_connection, self.interval = frames, per_connection, interval
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(30)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        session = self.connections
        self.connections += 1
        response = web.StreamResponse(
            headers={"Content-Type": "multipart/x-mixed-replace; boundary=frame"}
        )
        await response.prepare(request)
        for _ in range(self.per_connection):
            jpeg = self.frames[session % len(self.frames)]
            await response.write(
                b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: "
                + str(len(jpeg)).encode()
                + b"\r\n\r\n"
                + jpeg
                + b"\r\n"
            )
            await asyncio.sleep(self.interval)
        return response  # the connection ends: the camera "dropped"

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/video.mjpg", self.handle)
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}/video.mjpg"
        ready.set()
        self.loop.run_forever()


class WebhookReceiver:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        threading.Thread(target=self._run, args=(ready,), daemon=True).start()
        ready.wait(30)

    async def handle(self, request: web.Request) -> web.Response:
        self.events.append(await request.json())
        return web.Response(status=204)

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
        ready.set()
        self.loop.run_forever()


@pytest.fixture
def camera(photos: Path) -> Iterator[MjpegServer]:
    jpegs = [cv2.imencode(".jpg", bgr(photos, n))[1].tobytes() for n in (GROUP, COUPLE)]
    yield MjpegServer(jpegs, per_connection=4, interval=0.05)


def test_mjpeg_stream_is_read_interrupted_and_resumed_with_webhook(
    engine: Engine, camera: MjpegServer
) -> None:
    hook = WebhookReceiver()
    config = StreamConfig(camera.url, max_frames=6, changes_only=True, webhook=hook.url)
    events, stats = stream(engine, config)
    assert camera.connections >= 2 and stats.reconnects >= 1
    assert stats.processed == 6
    counts = [len(e["result"]["detections"]) for e in events]
    assert counts[:2] == [5, 2]  # the first connection shows five men, the second the couple
    deadline = time.monotonic() + 10
    while len(hook.events) < len(events) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hook.events == events


def test_live_source_drops_frames_when_inference_is_slower(engine: Engine, photos: Path) -> None:
    jpegs = [cv2.imencode(".jpg", bgr(photos, n))[1].tobytes() for n in (COUPLE,)]
    fast = MjpegServer(jpegs, per_connection=150, interval=0.002)
    config = StreamConfig(fast.url, reconnect=False, workers=1)
    events, stats = stream(engine, config, ["faceprint"])  # ~160 ms a frame
    assert stats.read >= 100 and stats.dropped > 0
    assert stats.processed == len(events) and stats.processed + stats.dropped <= stats.read


def test_cli_stream_with_exec_and_a_folder(photos: Path, tmp_path: Path) -> None:
    sink = tmp_path / "events.jsonl"
    script = f"import sys; open({str(sink)!r}, 'a').write(sys.stdin.read() + '\\n')"
    command = f'{sys.executable} -c "{script}"'
    done = subprocess.run(
        [sys.executable, "-m", "mlapi", "stream", str(photos), "-m", "faces", "--exec", command],
        capture_output=True,
        text=True,
        env=dict(os.environ),
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    printed = [json.loads(line) for line in done.stdout.splitlines()]
    assert [len(e["result"]["detections"]) for e in printed] == [5, 2, 0]  # sorted file names
    assert "3 processed" in done.stderr
    assert [json.loads(line) for line in sink.read_text().splitlines()] == printed


def test_cli_stream_missing_source(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mlapi", "stream", str(tmp_path / "nope.mp4")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1 and "no such file" in done.stderr


def test_files_are_processed_completely_even_with_a_slow_model(engine: Engine, video: Path) -> None:
    events, stats = stream(engine, StreamConfig(str(video), every=3, workers=1), ["faceprint"])
    assert stats.dropped == 0 and stats.processed == 10
    assert [e["frame"] for e in events] == list(range(0, 30, 3))


def test_stream_and_detect_give_the_same_answer_for_the_same_files(
    engine: Engine, photos: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    for name in (GROUP, COUPLE):
        (folder / name).write_bytes((photos / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff not really")
    (folder / "notes.txt").write_text("not an image, not read")
    models = ["objects", "faces"]
    for source in (str(folder), str(folder / "*.jpg")):
        logged: list[str] = []
        events, stats = stream(engine, StreamConfig(source), models, logged)
        if source == str(folder):  # a folder says what it did not read, as detect does
            assert f"skipped {folder / 'notes.txt'}: not an image file type" in logged
        by_file = {e["file"]: e for e in events}
        assert set(by_file) == {str(folder / n) for n in ("broken.jpg", GROUP, COUPLE)}
        assert "error" in by_file[str(folder / "broken.jpg")] and stats.failed == 1
        for name in (GROUP, COUPLE):
            alone = engine.detect((folder / name).read_bytes(), models)
            assert by_file[str(folder / name)]["result"] == json.loads(dumps(result_to_dict(alone)))


def test_a_face_scores_the_same_whichever_detectors_run_with_it(
    engine: Engine, photos: Path
) -> None:
    data = (photos / COUPLE).read_bytes()
    scores = [
        sorted(
            round(d.confidence, 6)
            for d in engine.detect(data, models).detections
            if d.label == "face"
        )
        for models in (
            ["faces"],
            ["faces", "genderage"],
            ["faces", "faceprint"],
            ["faces", "objects"],
        )
    ]
    assert all(s == scores[0] for s in scores)


def test_resized_frames_report_original_pixels(engine: Engine, video: Path) -> None:
    full, _ = stream(engine, StreamConfig(str(video), every=10))
    small, _ = stream(engine, StreamConfig(str(video), every=10, resize=320))
    for a, b in zip(full, small, strict=True):
        assert (b["result"]["width"], b["result"]["height"]) == (640, 424)
        boxes_a = sorted(d["box"] for d in a["result"]["detections"])
        boxes_b = sorted(d["box"] for d in b["result"]["detections"])
        assert len(boxes_a) == len(boxes_b)
        for box_a, box_b in zip(boxes_a, boxes_b, strict=True):
            assert max(abs(x - y) for x, y in zip(box_a, box_b, strict=True)) < 25, (box_a, box_b)


def test_annotated_video_keeps_the_source_duration(
    engine: Engine, video: Path, tmp_path: Path
) -> None:
    out = tmp_path / "every3.avi"
    stream(engine, StreamConfig(str(video), every=3, annotate=out))
    check = cv2.VideoCapture(str(out))
    frames, fps = check.get(cv2.CAP_PROP_FRAME_COUNT), check.get(cv2.CAP_PROP_FPS)
    assert frames == 10 and abs(frames / fps - 3.0) < 0.1  # a 3 s clip stays 3 s


def test_a_camera_that_is_not_there_is_an_error_not_a_wait(engine: Engine) -> None:
    started = time.monotonic()
    with pytest.raises(StreamError, match="cannot open 7"):
        stream(engine, StreamConfig("7"))
    assert time.monotonic() - started < 30


def test_cli_failures_are_one_line_naming_what_failed(photos: Path, tmp_path: Path) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "mlapi", "stream", *args],
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip

    camera = run("7", "-m", "objects")
    assert camera.returncode == 1 and camera.stderr.strip() == "error: cannot open 7"
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((photos / "object_detection_input.jpg").read_bytes())
    (folder / "b.jpg").write_bytes(b"not a jpeg at all")
    hook = run(str(folder), "-m", "objects", "--webhook", "http://127.0.0.1:1/hook?token=s3")
    assert hook.returncode == 1
    assert "webhook http://127.0.0.1:1/hook failed after" in hook.stderr
    assert "s3" not in hook.stderr  # the URL's query (a secret, often) is not shown
    failed = [json.loads(line) for line in hook.stdout.splitlines() if '"error"' in line]
    assert [f["file"] for f in failed] == [str(folder / "b.jpg")]
    assert f"{folder / 'b.jpg'}: not an image" in hook.stderr  # named for people too


@pytest.mark.parametrize("columns", [80, 120])
def test_the_status_line_fits_the_terminal(video: Path, columns: int) -> None:
    shown = on_terminal(["stream", str(video), "-m", "objects,faces"], columns)
    status = [
        piece for line in shown.split("\n") for piece in line.split("\r") if "frames read" in piece
    ]
    *lines, summary = status  # the summary at the end is printed once, not rewritten
    assert lines and all(len(piece.rstrip()) < columns for piece in lines), status
    assert summary.startswith("30 frames read, 30 processed")
    assert len(summary.rstrip()) < columns and summary.rstrip().endswith(" s"), summary
    if columns == 80:  # too narrow for every count: those of 0 are left out, words whole
        assert " 0 failed" not in summary and " 0 reconnects" not in summary, summary
