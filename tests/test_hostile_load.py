"""Hostile clients, round three: nothing that grows with the input runs on the event loop,
admission slots cannot leak and strangers hold none, and every name that reaches storage
is valid text. A real server on loopback with no models: everything here is refused or
answered before inference, so /health is what shows whether the loop stayed free."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from floods import gif_comments, jpeg_comments, png_chunks
from PIL import Image as PILImage
from servers import LiveServer, multipart, post, raw

from mlapi import imageheader
from mlapi.config import RuntimeConfig, ServerConfig
from mlapi.engine import Engine
from mlapi.errors import GalleryError, ImageError, ImageTooLarge, RequestError
from mlapi.images import PARALLEL_PROGRESSIVE, decode, decode_memory, encode_jpeg, pixel_cost
from mlapi.store import ModelCache
from mlapi.stores import open_stores
from mlapi.stores.gallery import Gallery
from mlapi.web.state import ServerState

PASSWORD = "hostile test password"
pytestmark = pytest.mark.usefixtures("no_server_errors")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("load")
    config = ServerConfig(models=(), max_queue=1, max_waiting=4, max_wait=2.0)
    gallery = Gallery(root / "gallery.json")
    with Engine(ModelCache(root / "empty-cache"), RuntimeConfig(workers=1), gallery=gallery) as e:
        server = LiveServer(e, root, config)
        server.users.add("mallory", PASSWORD)
        server.key = server.users.create_key("mallory", "tests")
        yield server
        server.stop()


def worst_health_ms(server: LiveServer, work: Callable[[], object]) -> float:
    """The slowest /health answer while `work()` runs (probing every 10 ms)."""
    stop, times = threading.Event(), []

    def probe() -> None:
        while not stop.is_set():
            started = time.perf_counter()
            assert server.call("GET", "/health").status == 200
            times.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)

    thread = threading.Thread(target=probe)
    thread.start()
    try:
        work()
    finally:
        stop.set()
        thread.join()
    return max(times)


# -- floods of empty blocks --------------------------------------------------------------
# Sizes as the probe sent them, within this server's 20 MB body limit: before, the GIF
# held the event loop for 7.7 s (of 31 s) and the JPEG for 3.5 s.
FLOODS = {
    "gif": gif_comments(800_000),
    "jpeg": jpeg_comments(4_900_000),
    "png": png_chunks(1_600_000),
}


@pytest.mark.parametrize("kind", sorted(FLOODS))
def test_a_flood_of_empty_blocks_is_refused_with_the_loop_free(live: LiveServer, kind: str) -> None:
    key = live.key
    answers = []
    worst = worst_health_ms(
        live,
        lambda: answers.append(
            live.call("POST", "/api/v1/detect", FLOODS[kind], {"X-API-Key": key})
        ),
    )
    answer = answers[0]
    assert answer.status == 400 and "1024" in answer.json()["msg"], answer.body
    assert worst < 1000, f"/health took {worst:.0f} ms during the {kind} flood"


def test_block_floods_are_refused_by_the_header_walk_alone() -> None:
    for kind, data in FLOODS.items():
        with pytest.raises(ImageError, match="before its image data"):
            decode(data)
        assert pixel_cost(data) == 4 * len(data)  # unreadable: costed by its bytes
        # A few more than a camera writes are fine.
        commented_gif = saved(PILImage.new("RGB", (8, 8)), "GIF", comment=b"a" * 20_000)
        fine = {"gif": commented_gif, "jpeg": jpeg_comments(50), "png": png_chunks(50)}[kind]
        assert decode(fine).pixels.shape == (8, 8, 3)


# -- headers sized as Pillow sizes them --------------------------------------------------
def saved(image: PILImage.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def test_every_format_is_sized_as_pillow_sizes_it() -> None:
    image = PILImage.fromarray(np.random.default_rng(1).integers(0, 255, (37, 53, 3), np.uint8))
    files = {
        "jpeg": saved(image, "JPEG"),
        "jpeg-progressive": saved(image, "JPEG", progressive=True),
        "png": saved(image, "PNG"),
        "gif": saved(image, "GIF"),
        "webp-lossy": saved(image, "WEBP"),
        "webp-lossless": saved(image, "WEBP", lossless=True),
        "webp-alpha": saved(image.convert("RGBA"), "WEBP"),
        "bmp": saved(image, "BMP"),
        "tiff": saved(image, "TIFF"),
        "tiff-be": saved(image.convert("L"), "TIFF", compression="tiff_lzw"),
    }
    for name, data in files.items():
        kind = name.split("-")[0]
        header = imageheader.read(kind, data)
        assert header is not None and (header.width, header.height) == (53, 37), name
        assert pixel_cost(data) == 53 * 37, name


def test_progressive_jpegs_are_priced_by_their_coefficients() -> None:
    image = PILImage.new("RGB", (160, 96))
    subsampled = imageheader.jpeg(saved(image, "JPEG", progressive=True, subsampling=2))
    full = imageheader.jpeg(saved(image, "JPEG", progressive=True, subsampling=0))
    assert subsampled.progressive and full.progressive
    blocks = 20 * 12  # 8×8 blocks of one full-resolution plane
    assert subsampled.coefficient_bytes == 128 * (blocks + 2 * blocks // 4)
    assert full.coefficient_bytes == 128 * 3 * blocks
    assert imageheader.jpeg(saved(image, "JPEG")).coefficient_bytes == 0  # baseline


def with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """The same JPEG with another size in its frame header (the header is all that is read
    before a refusal)."""
    sof = jpeg.index(b"\xff\xc2")
    return jpeg[: sof + 5] + struct.pack(">HH", height, width) + jpeg[sof + 9 :]


def test_a_progressive_jpeg_past_the_memory_budget_is_refused_from_its_header() -> None:
    full = saved(PILImage.new("RGB", (64, 64)), "JPEG", progressive=True, subsampling=0)
    with pytest.raises(ImageTooLarge, match="MiB to decode"):
        decode(with_size(full, 7000, 7000))  # 294 MB of coefficients in 4:4:4
    # 7000×7000 in 4:2:0 (147 MB) is within budget, but decodes one resolution at a time.
    subsampled = saved(PILImage.new("RGB", (64, 64)), "JPEG", progressive=True, subsampling=2)
    assert decode_memory(with_size(subsampled, 7000, 7000)) > PARALLEL_PROGRESSIVE
    assert decode_memory(subsampled) < PARALLEL_PROGRESSIVE


# -- admission ---------------------------------------------------------------------------
def test_a_slot_handed_over_at_the_deadline_is_kept_not_lost(tmp_path: Path) -> None:
    """The probe's race: one slot, a waiter with max_wait 0.2 s, and a release due 1e-7 s
    before the waiter's deadline, so both run in the same pass of the event loop."""
    config = ServerConfig(models=(), max_queue=0, max_wait=0.2)
    with Engine(ModelCache(tmp_path / "cache"), RuntimeConfig(workers=1)) as engine:
        state = ServerState(engine, open_stores(tmp_path), config)

        async def race() -> int:
            loop = asyncio.get_running_loop()
            await state.admit()  # the one slot
            start = loop.time()
            waiter = asyncio.create_task(state.admit())
            await asyncio.sleep(0)  # it queues, with its deadline at start + 0.2
            loop.call_at(start + 0.2 - 1e-7, state.release)
            try:
                await waiter  # handed the slot: admitted, not a 503
            except RequestError:
                return -1
            held = state.admitted
            state.release()
            return held

        for _ in range(5):
            held = asyncio.run(race())
            assert held in (1, -1)  # admitted, or refused in time
            assert state.admitted == 0 and not state.waiting


def gauge(server: LiveServer, stage: str) -> int:
    text = server.call("GET", "/metrics", headers={"X-API-Key": server.key}).body.decode()
    line = next(ln for ln in text.splitlines() if f'stage="{stage}"' in ln)
    return int(line.split()[-1])


def slow_form(server: LiveServer, sent: int) -> socket.socket:
    """A DeepStack form, no key yet, whose first field is still arriving."""
    head = (
        b"POST /v1/vision/detection HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        b'--b\r\nContent-Disposition: form-data; name="min_confidence"\r\n\r\n0.'
    )
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(head + b"1" * sent)
    return sock


def test_strangers_hold_no_slot_and_every_slot_comes_back(live: LiveServer) -> None:
    key = live.key
    held = [slow_form(live, 100) for _ in range(12)]  # capacity is 2 (1 worker + 1 queued)
    time.sleep(0.3)
    assert gauge(live, "admitted") == 0
    image = encode_jpeg(np.zeros((64, 64, 3), np.uint8))
    answer = live.call("POST", "/api/v1/detect", image, {"X-API-Key": key})
    assert answer.status == 409  # served (no models here), not kept waiting for a slot
    for sock in held:
        sock.close()
    for i in range(200):  # bodies that vanish half-way, at staggered moments
        slow_form(live, i).close()
    deadline = time.monotonic() + 10
    while (gauge(live, "admitted"), gauge(live, "waiting")) != (0, 0):
        assert time.monotonic() < deadline, "admission slots were not given back"
        time.sleep(0.1)


def test_unauthenticated_json_is_refused_before_its_body_is_read(live: LiveServer) -> None:
    head = (
        b"POST /v1/vision/detection HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 19000000\r\n\r\n"
    )
    started = time.monotonic()
    status, _, body = raw(live, head + b'{"a": "xxxx')  # the rest never comes
    assert status == 401 and json.loads(body)["error"] == "Incorrect api key"
    assert time.monotonic() - started < 5  # well before the 30 s read timeout


# -- names and JSON ----------------------------------------------------------------------
NESTED = b"[" * 3000


@pytest.mark.parametrize(
    ("path", "keyed", "status"),
    [
        ("/api/v1/login", False, 400),
        ("/v1/vision/detection", False, 401),  # no key: refused before the body is read
        ("/v1/vision/face/register", False, 401),
        ("/v1/vision/detection", True, 400),
        ("/detect", True, 400),
        ("/api/v1/infer", True, 400),
        ("/api/v1/detect", True, 400),
        ("/api/v1/detect/object", True, 400),
    ],
)
def test_deeply_nested_json_is_a_4xx(live: LiveServer, path: str, keyed: bool, status: int) -> None:
    headers = {"Content-Type": "application/json"}
    if keyed:
        headers["X-API-Key"] = live.key
    got, answer = post(live, path, NESTED, headers)
    assert got == status, answer
    message = json.dumps(answer)
    assert "nested too deeply" in message or "JSON" in message or got == 401


LONE = '"\\ud800"'  # a JSON escape of half a surrogate pair


@pytest.mark.parametrize(
    ("path", "body", "keyed"),
    [
        ("/api/v1/login", f'{{"username": "mallory", "password": {LONE}}}', False),
        ("/api/v1/login", f'{{"username": {LONE}, "password": "x"}}', False),
        ("/api/v1/recognition/faces", f'{{"subject": {LONE}, "url": "http://x/"}}', True),
        ("/detect", f'{{"id": {LONE}, "data": ""}}', True),
        ("/api/v1/detect", f'{{"models": "objects", {LONE}: "1"}}', True),
    ],
)
def test_lone_surrogates_are_refused_at_the_edge(
    live: LiveServer, path: str, body: str, keyed: bool
) -> None:
    headers = {"Content-Type": "application/json"}
    if keyed:
        headers["X-API-Key"] = live.key
    status, answer = post(live, path, body.encode(), headers)
    assert status == 400 and "not valid text" in json.dumps(answer), answer


def test_odd_field_names_are_a_4xx_in_the_dialects_shape(live: LiveServer) -> None:
    key = live.key
    image = encode_jpeg(np.zeros((64, 64, 3), np.uint8))
    form = (
        b'--b\r\nContent-Disposition: form-data; name="objects.\xff"\r\n\r\n1\r\n--b\r\n'
        b'Content-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + image + b"\r\n--b--\r\n"
    )
    headers = {"Content-Type": "multipart/form-data; boundary=b", "X-API-Key": key}
    status, answer = post(live, "/api/v1/detect", form, headers)
    assert status == 400 and "not valid text" in answer["msg"]
    status, answer = post(live, "/api/v1/detect?objects%01x=1", image, {"X-API-Key": key})
    assert status == 400 and "control characters" in answer["msg"]
    body, content_type = multipart({"image": image}, {"api_key": key, "userid": "a\x07b"})
    status, answer = post(live, "/v1/vision/face/register", body, {"Content-Type": content_type})
    assert status == 400 and answer["success"] is False and "control" in answer["error"]


def test_a_model_name_is_never_a_path(live: LiveServer) -> None:
    key = live.key
    image = encode_jpeg(np.zeros((64, 64, 3), np.uint8))
    path = "/api/v1/detect?models=yolo&yolo.model=../../../../etc"
    status, answer = post(live, path, image, {"X-API-Key": key, "Content-Type": "image/jpeg"})
    assert status == 400 and "model's name" in answer["msg"]


def test_unparsable_requests_get_400_and_one_log_line(
    live: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    status, _, _ = raw(live, b"GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert status == 400
    long_header = b"GET /health HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\nConnection: close\r\n\r\n"
    assert raw(live, long_header)[0] == 400
    time.sleep(0.2)
    lines = [r for r in caplog.records if r.getMessage().startswith("bad request")]
    assert len(lines) >= 2 and not any(r.exc_info for r in lines)


# -- the gallery -------------------------------------------------------------------------
def test_a_gallery_with_a_bad_name_from_an_older_version_is_readable_and_repairable(
    tmp_path: Path,
) -> None:
    from helpers import run_mlapi

    path = tmp_path / "gallery.json"
    rows = {"1": {"id": "a1", "name": "\ud800", "model": "dlib", "created": 0.0,
                  "source": "", "embedding": [1.0, 0.0]},
            "2": {"id": "b2", "name": "bob", "model": "dlib", "created": 0.0,
                  "source": "", "embedding": [0.0, 1.0]}}  # fmt: skip
    path.write_text(json.dumps({"samples": rows}))  # as json writes it: "\\ud800"
    gallery = Gallery(path)
    assert gallery.names() == ["\\ud800", "bob"]
    assert gallery.match(np.array([1.0, 0.0], np.float32), "dlib").name == "\\ud800"  # type: ignore[union-attr]
    listed = run_mlapi(["faces", "list"], MLAPI_DATA_DIR=str(tmp_path))
    assert listed.returncode == 0 and "\\ud800\t1 sample(s)" in listed.stdout, listed.stderr
    removed = run_mlapi(["faces", "remove", "\\ud800"], MLAPI_DATA_DIR=str(tmp_path))
    assert removed.returncode == 0, removed.stderr
    assert Gallery(path).names() == ["bob"]
    for bad in ("\ud800", "a\x00b", "tab\tname"):
        with pytest.raises(GalleryError, match=r"not valid text|control"):
            gallery.add(bad, np.array([1.0, 0.0], np.float32), "dlib")


def test_removing_nobody_rewrites_nothing(tmp_path: Path) -> None:
    path = tmp_path / "gallery.json"
    gallery = Gallery(path)
    gallery.add("alice", np.array([1.0, 0.0], np.float32), "dlib")
    before = path.stat()
    with pytest.raises(GalleryError, match="no person 'nobody'"):
        gallery.remove("nobody")
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_big_gallery_is_read_and_changed_off_the_event_loop(live: LiveServer) -> None:
    key = live.key
    path = live.data_dir / "gallery.json"
    rng = np.random.default_rng(0)
    rows = {
        str(i + 1): {"id": f"{i:012x}", "name": f"person {i // 5}", "model": "dlib", "created": 0.0,
                 "source": "", "embedding": [round(float(v), 7) for v in rng.standard_normal(128)]}
        for i in range(10_000)
    }  # fmt: skip
    path.write_text(json.dumps({"samples": rows}))
    headers = {"X-API-Key": key}
    answers = []

    def calls() -> None:
        answers.append(live.call("DELETE", "/api/v1/recognition/subjects/nobody", headers=headers))
        answers.append(live.call("GET", "/api/v1/recognition/subjects", headers=headers))
        answers.append(
            live.call("DELETE", "/api/v1/recognition/subjects/person%203", headers=headers)
        )

    worst = worst_health_ms(live, calls)
    assert [a.status for a in answers] == [404, 200, 200]
    assert len(answers[1].json()["subjects"]) == 2000
    # Parsing and writing 15 MB of JSON holds the interpreter for a while (json holds the
    # GIL), but never for the whole request as it did on the loop.
    assert worst < 2000, f"/health took {worst:.0f} ms"
    path.unlink()


# -- DeepStack keys anywhere in the form -------------------------------------------------
def key_last_form(image: bytes, key: str) -> tuple[bytes, str]:
    """Double Take's order: the image part first, `api_key` after it."""
    body = (
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + image + b"\r\n"
        b'--b\r\nContent-Disposition: form-data; name="api_key"\r\n\r\n'
        + key.encode() + b"\r\n--b--\r\n"
    )  # fmt: skip
    return body, "multipart/form-data; boundary=b"


def test_a_form_key_after_the_image_is_accepted(live: LiveServer) -> None:
    image = encode_jpeg(np.zeros((64, 64, 3), np.uint8))
    body, content_type = key_last_form(image, live.key)
    status, answer = post(live, "/v1/vision/face/list", body, {"Content-Type": content_type})
    assert status == 200 and answer["success"] is True and answer["faces"] == []
    body, content_type = key_last_form(image, "mlk_wrong")
    status, answer = post(live, "/v1/vision/face/list", body, {"Content-Type": content_type})
    assert status == 401 and answer["error"] == "Incorrect api key"


def test_only_a_few_forms_with_the_key_last_are_read_at_once(live: LiveServer) -> None:
    head = (
        b"POST /v1/vision/detection HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n"
        b'--b\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff"
    )
    held = []
    for _ in range(ServerConfig().max_keyless_bodies):  # images still arriving, no key yet
        sock = socket.create_connection(("127.0.0.1", live.port))
        sock.sendall(head + b"x" * 1000)
        held.append(sock)
    time.sleep(0.3)
    image = encode_jpeg(np.zeros((64, 64, 3), np.uint8))
    body, content_type = key_last_form(image, live.key)
    status, answer = post(live, "/v1/vision/face/list", body, {"Content-Type": content_type})
    assert status == 503 and "api_key" in answer["error"]
    # A key in the headers, or before the image, does not wait for strangers.
    body, content_type = multipart({"image": image}, {"api_key": live.key})
    status, answer = post(live, "/v1/vision/face/list", body, {"Content-Type": content_type})
    assert status == 200 and answer["success"] is True and isinstance(answer["faces"], list)
    for sock in held:
        sock.close()
    time.sleep(0.3)
    body, content_type = key_last_form(image, live.key)
    status, answer = post(live, "/v1/vision/face/list", body, {"Content-Type": content_type})
    assert status == 200 and answer["success"] is True


# -- forgiving paths ---------------------------------------------------------------------
def test_trailing_and_doubled_slashes_reach_the_same_route_and_its_checks(
    live: LiveServer,
) -> None:
    key = live.key
    image = encode_jpeg(np.zeros((64, 64, 3), np.uint8))
    for path in ("/v1/vision/face/list/", "//v1/vision/face//list"):
        body, content_type = multipart({"image": image}, {"api_key": key})
        status, answer = post(live, path, body, {"Content-Type": content_type})
        assert status == 200 and answer["faces"] == [], path
    models = live.call("GET", "/api/v1/models/", headers={"X-API-Key": key})
    assert models.status == 200 and "models" in models.json()
    # The canonical route's checks apply: no key, no answer; a bad key in /hg/KEY/ too.
    assert live.call("GET", "/api/v1/models/").status == 401
    hg = live.call("POST", f"/hg/{key}//objects", image, {"Content-Type": "image/jpeg"})
    assert hg.status == 409 and "mlapi models pull" in hg.json()["error"]  # no models here
    wrong = live.call("POST", "/hg/mlk_wrong//objects", image, {"Content-Type": "image/jpeg"})
    assert wrong.status == 401 and wrong.json() == {"error": "invalid API key"}
    metrics = live.call("GET", "/metrics", headers={"X-API-Key": key}).body.decode()
    assert 'route="/api/v1/models",status="200"' in metrics  # counted under its own name
