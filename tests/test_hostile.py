"""Hostile and broken clients get a clear 4xx in their dialect, and nothing is logged as a
server error. A real server on loopback with no models (everything here is refused before
inference), spoken to over raw sockets where a client library would tidy the request."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage
from servers import LiveServer, multipart, post, raw

from mlapi.auth import TokenIssuer
from mlapi.config import RuntimeConfig, ServerConfig
from mlapi.engine import Engine
from mlapi.errors import ImageError, ImageTooLarge
from mlapi.images import decode, encode_jpeg
from mlapi.store import ModelCache
from mlapi.stores.files import locked_db
from mlapi.stores.logins import FileLoginAttempts
from mlapi.stores.secret import FileSecret
from mlapi.stores.users import UserStore
from mlapi.web.answers import safe_path

PASSWORD = "hostile test password"
pytestmark = pytest.mark.usefixtures("no_server_errors")


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    root = tmp_path_factory.mktemp("hostile")
    config = ServerConfig(models=(), allow_url_fetch=True, max_body=4 * 1024 * 1024)
    with Engine(ModelCache(root / "empty-cache"), RuntimeConfig(workers=1)) as engine:
        server = LiveServer(engine, root, config)
        server.users.add("mallory", PASSWORD)
        server.key = server.users.create_key("mallory", "tests")
        yield server
        server.stop()


def deepstack_error(body: dict[str, Any]) -> bool:
    return body["success"] is False and isinstance(body["error"], str)


# -- malformed requests, no key ----------------------------------------------------------
MULTIPART = "multipart/form-data"


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        (MULTIPART, b"x"),  # no boundary
        (f"{MULTIPART}; boundary=abc", b"--xyz\r\n\r\nnope"),  # a wrong one
        (f"{MULTIPART}; boundary=abc", b'--abc\r\nContent-Disposition: form-data; name="a"\r\n'),
        (
            f"{MULTIPART}; boundary=abc",
            b"--abc\r\nX-Long: " + b"h" * 9000 + b"\r\n\r\nv\r\n--abc--\r\n",  # header > 8190
        ),
    ],
)
def test_malformed_multipart_is_a_4xx(live: LiveServer, content_type: str, body: bytes) -> None:
    for path in ("/v1/vision/detection", "/api/v1/detect"):
        status, answer = post(live, path, body, {"Content-Type": content_type})
        assert 400 <= status < 500, (path, status, answer)
        assert deepstack_error(answer) if path.startswith("/v1/") else answer["code"] == status


def test_odd_bytes_in_credentials_are_401(live: LiveServer) -> None:
    for header in (b"X-API-Key: \xff\xfe", b"Authorization: Bearer \xff\xfe"):
        request = b"GET /api/v1/models HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\n"
        status, _, body = raw(live, request)
        assert status == 401 and json.loads(body)["code"] == 401


def test_many_tiny_parts_are_refused_quickly(live: LiveServer) -> None:
    fields = {f"f{i}": "x" for i in range(40_000)}
    body, content_type = multipart({}, fields)
    started = time.monotonic()
    status, answer = post(live, "/v1/vision/detection", body, {"Content-Type": content_type})
    assert status == 413 and "parts" in answer["error"]
    assert time.monotonic() - started < 5
    health = live.call("GET", "/health")
    assert health.status == 200 and health.json()["health"] == "OK"


# -- decide before reading ---------------------------------------------------------------
def test_no_key_means_401_before_any_image_or_url(live: LiveServer) -> None:
    image = encode_jpeg(np.zeros((64, 64, 3), np.uint8))
    body, content_type = multipart({"image": image}, {})
    status, answer = post(live, "/v1/vision/detection", body, {"Content-Type": content_type})
    assert status == 401 and answer["error"] == "Incorrect api key"
    # A URL to a closed loopback port: without a key it is never fetched (no fetch error).
    body, content_type = multipart({}, {"url": "http://127.0.0.1:1/x.jpg"})
    status, answer = post(live, "/v1/vision/detection", body, {"Content-Type": content_type})
    assert status == 401 and answer["error"] == "Incorrect api key"
    status, answer = post(
        live,
        "/api/v1/detect",
        b"url=http%3A%2F%2F127.0.0.1%3A1%2F",
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 401 and answer["msg"] == "Missing Authorization Header"


def test_a_key_in_the_form_still_works(live: LiveServer) -> None:
    body, content_type = multipart({}, {"api_key": live.key})
    status, answer = post(live, "/v1/vision/face/list", body, {"Content-Type": content_type})
    assert status == 200 and answer["success"] is True


def test_oversize_bodies_are_413_from_the_headers(live: LiveServer) -> None:
    request = (
        b"POST /v1/vision/detection HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
        b"Content-Length: 209715200\r\nExpect: 100-continue\r\n\r\n"
    )
    status, _, body = raw(live, request)  # never "100 Continue"
    assert status == 413 and deepstack_error(json.loads(body))


def test_unknown_paths_are_404_not_401(live: LiveServer) -> None:
    key = live.key
    for path in ("/nope", "/nope/", f"/hg/{key}/nope", "/v1/vision/nope", "/api/v1/nope//"):
        assert live.call("POST", path, b"x").status == 404, path


def test_bad_values_with_a_key_are_400(live: LiveServer) -> None:
    key = live.key
    image = encode_jpeg(np.zeros((64, 64, 3), np.uint8))
    for fields in (
        {"max_predictions": "²"},
        {"max_predictions": "9" * 5000},
        {"url": "http://[1/"},
    ):
        body, content_type = multipart(
            {} if "url" in fields else {"image": image}, {**fields, "api_key": key}
        )
        status, answer = post(live, "/v1/vision/detection", body, {"Content-Type": content_type})
        assert status == 400 and deepstack_error(answer), (fields, answer)
    long = live.call(
        "POST",
        "/api/v1/detect?objects.confidence=" + "9" * 5000,
        image,
        {"X-API-Key": key, "Content-Type": "image/jpeg"},
    )
    assert long.status == 400 and "confidence" in long.json()["msg"]


def test_error_bodies_show_no_reprs_or_paths(live: LiveServer) -> None:
    key = live.key
    answer = live.call(
        "POST", "/api/v1/detect", b"GIF89a", {"X-API-Key": key, "Content-Type": "image/gif"}
    )
    assert answer.status == 400 and "0x" not in answer.json()["msg"]
    # No models in this server's cache: the answer names the command, not the cache path.
    image = encode_jpeg(np.zeros((64, 64, 3), np.uint8))
    answer = live.call(
        "POST", "/api/v1/detect", image, {"X-API-Key": key, "Content-Type": "image/jpeg"}
    )
    assert answer.status == 409 and "mlapi models pull" in answer.json()["msg"]
    assert "empty-cache" not in answer.json()["msg"]


def test_register_of_an_oversize_image_is_413(live: LiveServer) -> None:
    big = io.BytesIO()
    PILImage.new("RGB", (6000, 5000)).save(big, format="PNG")  # 30 MP PNG: over the PNG cap
    body, content_type = multipart({"image": big.getvalue()}, {"userid": "X", "api_key": live.key})
    status, answer = post(live, "/v1/vision/face/register", body, {"Content-Type": content_type})
    assert status == 413 and deepstack_error(answer)


def test_a_client_that_leaves_mid_body_is_not_a_server_error(live: LiveServer) -> None:
    request = (
        (
            f"POST /api/v1/detect HTTP/1.1\r\nHost: x\r\nX-API-Key: {live.key}\r\n"
            "Content-Type: image/jpeg\r\nContent-Length: 100000\r\n\r\n"
        ).encode()
        + b"\xff\xd8\xff"
        + b"x" * 1000
    )
    with socket.create_connection(("127.0.0.1", live.port)) as sock:
        sock.sendall(request)
    time.sleep(0.3)  # the autouse fixture then checks that nothing was logged as an error


# -- logs --------------------------------------------------------------------------------
def test_log_lines_cannot_be_forged_and_keys_are_masked() -> None:
    assert "\n" not in safe_path("/x\n2099-01-01 FORGED")
    assert safe_path("//hg/mlk_secret/objects") == "//hg/***/objects"
    assert safe_path("/HG/mlk_secret/faces") == "/HG/***/faces"


# -- login, tokens, secrets --------------------------------------------------------------
def test_a_burst_of_guesses_is_limited_and_keys_are_small(tmp_path: Path) -> None:
    limiter = FileLoginAttempts(tmp_path / "logins.json", limit=5)
    allowed = [limiter.attempt("alice", "10.0.0.9") == 0 for _ in range(40)]  # all in flight
    assert sum(allowed) == 5  # a right password hidden in the burst gets 429 too
    for i in range(60):
        limiter.attempt("u" * (4 << 20) + str(i), f"192.0.2.{i}")
    stored = json.loads((tmp_path / "logins.json").read_bytes())
    assert len(stored) == 2 + 2 * 60 and all(len(k) == 64 for k in stored)
    assert (tmp_path / "logins.json").stat().st_size < 20_000
    assert (tmp_path / "logins.json").stat().st_mode & 0o077 == 0


def test_failed_logins_are_shared_by_every_process_and_forgiven_on_success(
    tmp_path: Path,
) -> None:
    # Two limiters on one file stand for two server processes (or a restart).
    first, second = (FileLoginAttempts(tmp_path / "logins.json", limit=5) for _ in range(2))
    assert [first.attempt("bob", "10.0.0.1") for _ in range(3)] == [0, 0, 0]
    assert [second.attempt("bob", "10.0.0.1") for _ in range(2)] == [0, 0]
    assert 290 < first.attempt("bob", "10.0.0.1") <= 301  # the sixth, whichever answers
    assert second.attempt("bob", "10.0.0.2") == 0  # another address is not locked out
    second.succeeded("bob", "10.0.0.2")
    third = FileLoginAttempts(tmp_path / "logins.json", limit=5)
    assert third.attempt("bob", "10.0.0.2") == 0 and third.attempt("bob", "10.0.0.1") > 0


def test_tokens_end_with_a_new_password_or_a_new_user(tmp_path: Path) -> None:
    users = UserStore(tmp_path / "users.json")
    tokens = TokenIssuer(FileSecret(tmp_path / "jwt.secret").get())
    users.add("dave", PASSWORD)
    old = tokens.issue("dave", users.stamp("dave") or "")
    assert tokens.claims(old) == ("dave", users.stamp("dave"))
    users.set_password("dave", PASSWORD + "2")
    assert tokens.claims(old)[1] != users.stamp("dave")
    stamp = users.stamp("dave")
    users.remove("dave")
    users.add("dave", PASSWORD + "2")
    assert users.stamp("dave") != stamp


def test_racing_servers_share_one_secret(tmp_path: Path) -> None:
    path = tmp_path / "jwt.secret"
    issuers: list[TokenIssuer] = []
    threads = [
        threading.Thread(target=lambda: issuers.append(TokenIssuer(FileSecret(path).get())))
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    token = issuers[0].issue("x")
    assert all(i.claims(token)[0] == "x" for i in issuers)


def test_killed_writers_leave_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "gallery.json"
    (tmp_path / ".gallery.json.abc123").write_text('{"embeddings": "left by kill -9"}')
    with locked_db(path) as db:
        db.table("samples").insert({"x": 1})
    assert not list(tmp_path.glob(".gallery.json.*"))


# -- images ------------------------------------------------------------------------------
def test_decode_bombs_are_refused_cheaply() -> None:
    webp = io.BytesIO()
    PILImage.new("RGB", (7000, 7000)).save(webp, format="WEBP", quality=1)
    with pytest.raises(ImageTooLarge):
        decode(webp.getvalue())
    # A progressive JPEG with hundreds of scans: refused by counting, before decoding.
    base = encode_jpeg(np.zeros((8, 8, 3), np.uint8))
    bomb = base[:-2] + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" * 400 + b"\xff\xd9"
    started = time.monotonic()
    with pytest.raises(ImageError, match="scans"):
        decode(bomb)
    assert time.monotonic() - started < 1
    # A huge JPEG is decoded reduced, whatever the detector asks for.
    big = encode_jpeg(np.zeros((4000, 6000, 3), np.uint8))
    image = decode(big)
    assert (image.width, image.height) == (6000, 4000) and image.pixels.size <= 16_000_000 * 3


def test_16_bit_greyscale_keeps_its_tones() -> None:
    png = io.BytesIO()
    ramp = np.tile(np.linspace(0, 65535, 256, dtype=np.uint16), (16, 1))
    PILImage.fromarray(ramp).save(png, format="PNG")
    pixels = decode(png.getvalue()).pixels
    assert pixels[0, 0, 0] == 0 and pixels[0, -1, 0] == 255 and 100 < pixels[0, 128, 0] < 156


def test_metrics_need_a_key_unless_the_operator_opens_them(live: LiveServer) -> None:
    assert live.call("GET", "/metrics").status == 401
    text = live.call("GET", "/metrics", headers={"X-API-Key": live.key}).body.decode()
    assert 'mlapi_requests_total{method="POST",route="/v1/vision/detection",status="401"}' in text
    assert 'mlapi_queue_depth{stage="inference"} 0' in text
    assert "mlapi_rejected_total" in text and "mlapi_ready" in text
