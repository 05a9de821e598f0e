"""ZoneMinder's clients on a real server: pyzm's own gateway client (PyPI pyzm 2.5.6, as
zmeventnotification 7.x uses it) and the shapes zm_detect 5.7+ and 6.x parse."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import pytest
import requests
from aiohttp import web
from pyzm.ml.remote import GatewayClient, GatewayModelError
from servers import Answer, LiveServer, Loopback

from mlapi.config import RuntimeConfig, ServerConfig
from mlapi.dialects.mlapi_seed.settings import ZoneMinderSettings
from mlapi.engine import Engine
from mlapi.enroll import enroll
from mlapi.store import ModelCache
from mlapi.stores.gallery import Gallery
from mlapi.web.state import ENGINE, SERVER

PASSWORD = "zoneminder password"
LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


@pytest.fixture(scope="module")
def server(store: ModelCache, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    data = tmp_path_factory.mktemp("zm")
    config = ServerConfig(models=("objects",), allow_url_fetch=True, url_networks=LOOPBACK)
    with Engine(store, gallery=Gallery(data / "gallery.json")) as engine:
        live = LiveServer(engine, data, config)
        live.users.add("zm", PASSWORD)
        yield live
        live.stop()


def gateway(server: LiveServer) -> GatewayClient:
    return GatewayClient(f"{server.url}/api/v1", "zm", PASSWORD, timeout=60)


def test_pyzm_object_model_in_image_mode(server: LiveServer, photos: Path) -> None:
    frame = cv2.imread(str(photos / "object_detection_input.jpg"))  # pyzm sends BGR as PNG
    found = gateway(server).infer(frame, "object", "YOLO ONNX", min_confidence=0.4)
    labels = {d.label for d in found}
    assert {"person", "dog"} <= labels and labels & {"horse", "cow"}  # torn between the two
    assert all(d.model_name == "YOLO ONNX" and 0.4 <= d.confidence <= 1 for d in found)
    dog = next(d for d in found if d.label == "dog")
    assert dog.bbox.x1 < 120 and dog.bbox.x2 > 180  # pixels of the original frame


def test_pyzm_face_model_names_known_people(server: LiveServer, photos: Path) -> None:
    engine = server.app[ENGINE]  # the running server's own engine and gallery
    couple = (photos / "gender_detection_input.jpg").read_bytes()
    enroll(engine, engine.runtime.gallery, "Kumail", couple, "couple", largest=True)
    frame = cv2.imread(str(photos / "face_detection_input.jpg"))
    found = gateway(server).infer(frame, "face", "dlib face", min_confidence=0.5)
    names = [d.label for d in sorted(found, key=lambda d: d.bbox.x1)]
    assert names == ["unknown", "unknown", "Kumail", "unknown", "unknown"]
    engine.runtime.gallery.remove("Kumail")


def test_pyzm_model_the_server_cannot_run_is_skipped(server: LiveServer, photos: Path) -> None:
    frame = cv2.imread(str(photos / "object_detection_input.jpg"))
    with pytest.raises(GatewayModelError, match="type='audio'"):
        gateway(server).infer(frame, "audio", "birdnet")


@pytest.fixture(scope="module")
def zoneminder(photos: Path) -> Iterator[str]:
    """A ZoneMinder stand-in on loopback serving a frame at /zm/index.php?view=image."""

    async def image(request: web.Request) -> web.Response:
        if request.query.get("token") != "secret":
            return web.Response(status=401)
        return web.Response(body=(photos / "object_detection_input.jpg").read_bytes())

    server = Loopback([web.get("/zm/index.php", image)])
    yield server.url
    server.stop()


def test_pyzm_url_mode_reaches_only_allowed_networks(
    server: LiveServer, store: ModelCache, zoneminder: str, tmp_path: Path
) -> None:
    client = gateway(server)
    client.current_frame = {
        "url": f"{zoneminder}/zm/index.php?view=image&eid=1&fid=snapshot",
        "zm_auth": "token=secret",
        "verify_ssl": False,
    }
    found = client.infer(None, "object", "YOLO ONNX", min_confidence=0.4)
    assert "dog" in {d.label for d in found}
    # Without the operator's allow-list the same private address is refused.
    config = ServerConfig(models=("objects",), allow_url_fetch=True)
    with Engine(store) as engine:
        closed = LiveServer(engine, tmp_path, config)
        closed.users.add("zm", PASSWORD)
        try:
            other = gateway(closed)
            other.current_frame = client.current_frame
            with pytest.raises(GatewayModelError, match=r"fetch failed.*refused"):
                other.infer(None, "object", "YOLO ONNX")
        finally:
            closed.stop()


def test_zm_detect_shapes(server: LiveServer, photos: Path) -> None:
    token = server.token("zm", PASSWORD)
    data = (photos / "object_detection_input.jpg").read_bytes()
    seed = server.upload("/api/v1/detect/object", {"file": data}, token).json()
    assert all(item["label"] == item["type"] for item in seed)  # zm_detect 5.7+ reads label
    zm = server.upload(
        "/api/v1/detect/object?response_format=zm_detect", {"file": data}, token
    ).json()
    matched = zm["matched_data"]
    assert matched["image_dimensions"] == {"original": [424, 640], "resized": None}
    assert len(matched["boxes"]) == len(matched["labels"]) == len(matched["confidences"])
    assert matched["labels"] == [item["label"] for item in seed]
    assert all(0 < c <= 1 for c in matched["confidences"]) and zm["all_matches"] == [matched]


class StandIn:
    """ZoneMinder's web API as zm_detect's event path meets it: a login that hands out
    tokens, and event frames by id (`snapshot`, `alarm`, numbers); frame 7 is missing,
    frame 9 is slow; `revoke()` makes the current token stale, `refuse_all` refuses every
    token, `answer` replaces the login's answer (a JSON document)."""

    def __init__(self, photos: Path) -> None:
        self.photos = photos
        self.logins = 0
        self.refuse_all = False
        self.answer: object = None
        self.frames: list[str] = []
        self.valid: set[str] = set()
        self.server = Loopback(
            [web.post("/zm/api/host/login.json", self.login), web.get("/zm/index.php", self.image)]
        )
        self.portal = f"{self.server.url}/zm"

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        if (form.get("user"), form.get("pass")) != ("admin", "zm secret"):
            return web.json_response({"success": False}, status=401)
        self.logins += 1
        token = f"token{self.logins}"
        self.valid.add(token)
        if self.answer is not None:
            return web.json_response(self.answer)
        return web.json_response({"access_token": token, "access_token_expires": 3600})

    async def image(self, request: web.Request) -> web.Response:
        if self.refuse_all or request.query.get("token") not in self.valid:
            return web.Response(status=401)
        if request.query.get("view") != "image" or request.query.get("eid") != "1234":
            return web.Response(status=404)
        fid = request.query.get("fid", "")
        self.frames.append(fid)
        if fid == "9":
            await asyncio.sleep(3)
        names = {"snapshot": "object_detection_input.jpg", "alarm": "face_detection_input.jpg"}
        names["3"] = "gender_detection_input.jpg"
        if fid not in names:
            return web.Response(status=404, text="no such frame")
        return web.Response(body=(self.photos / names[fid]).read_bytes(), content_type="image/jpeg")

    def revoke(self) -> None:
        self.valid.clear()


@pytest.fixture(scope="module")
def event_server(
    store: ModelCache, photos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, StandIn]]:
    standin = StandIn(photos)
    data = tmp_path_factory.mktemp("zm-events")
    portal = ZoneMinderSettings(portal=standin.portal, user="admin", password="zm secret")
    config = ServerConfig(
        models=("objects",), url_networks=LOOPBACK, dialects={"mlapi": portal}
    )
    with Engine(store, gallery=Gallery(data / "gallery.json")) as engine:
        live = LiveServer(engine, data, config)
        live.users.add("zm", PASSWORD)
        yield live, standin
        live.stop()
    standin.server.stop()


def zm_detect_event(
    server: LiveServer, event: str, options: dict[str, Any], model: str = "object"
) -> dict[str, Any]:
    """zm_detect 6.1's remote_detect for an event (hook/zm_detect.py): log in at
    {ml_gateway}/login, then POST {ml_gateway}/detect/object?type=MODEL with
    delete=True&response_format=zm_detect, no file, and this JSON body."""
    api_url = f"{server.url}/api/v1"
    login = requests.post(
        url=api_url + "/login",
        data=json.dumps({"username": "zm", "password": PASSWORD}),
        headers={"content-type": "application/json"},
        timeout=60,
    )
    auth_header = {"Authorization": "Bearer " + login.json()["access_token"]}
    ml_overrides: dict[str, Any] = {
        "model_sequence": "object,face",
        "object": {"pattern": "(person|dog|car)"},
        "face": {"pattern": ".*"},
        "alpr": {"pattern": ".*"},
    }
    params: dict[str, Any] = {"delete": True, "response_format": "zm_detect"}
    r = requests.post(
        url=api_url + "/detect/object?type=" + model,
        headers=auth_header,
        params=params,
        files={},
        json={
            "version": "6.1.29",
            "mid": "2",
            "reason": "Motion: All",
            "stream": event,
            "stream_options": options,
            "ml_overrides": ml_overrides,
        },
        timeout=60,
    )
    r.raise_for_status()
    data: dict[str, Any] = r.json()
    return data


OPTIONS = {  # what zm_detect builds from objectconfig.ini (api and polygons as it sends them)
    "frame_set": "snapshot,alarm",
    "resize": 800,
    "strategy": "first",
    "disable_ssl_cert_check": True,
    "api": None,
    "polygons": [{"name": "all", "value": [[0, 0], [640, 0], [640, 424]], "pattern": None}],
}


def test_zm_detect_event_path_reads_frames_from_zoneminder(
    event_server: tuple[LiveServer, StandIn],
) -> None:
    server, standin = event_server
    data = zm_detect_event(server, "1234", OPTIONS)
    matched = data["matched_data"]
    assert matched["frame_id"] == "snapshot" and standin.frames[-1] == "snapshot"
    assert {"person", "dog"} <= set(matched["labels"])
    # Boxes in the frame resized to 800 wide, as mlapi 2.x gave them and zm_detect draws.
    assert matched["image_dimensions"] == {"original": [424, 640], "resized": [530, 800]}
    assert all(0 <= b[0] < b[2] <= 800 and 0 <= b[1] < b[3] <= 530 for b in matched["boxes"])
    assert data["all_matches"] == [matched]


def test_missing_slow_and_refused_frames(
    event_server: tuple[LiveServer, StandIn], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, standin = event_server
    monkeypatch.setattr("mlapi.dialects.mlapi_seed.events.FRAME_TIMEOUT", 1.0)
    standin.frames.clear()
    standin.revoke()  # the server's token is stale: it logs in again, once
    logins = standin.logins
    options = {**OPTIONS, "frame_set": "7,9,3", "resize": "no", "max_attempts": 2,
               "sleep_between_attempts": 0}  # fmt: skip
    matched = zm_detect_event(server, "1234", options)["matched_data"]
    assert standin.logins == logins + 1
    assert standin.frames == ["7", "7", "9", "9", "3"]  # missing, slow (each tried twice)
    assert matched["frame_id"] == "3" and matched["image_dimensions"]["resized"] is None
    assert "person" in matched["labels"]


def test_event_path_errors_say_what_is_wrong(
    event_server: tuple[LiveServer, StandIn], server: LiveServer
) -> None:
    events, standin = event_server
    with pytest.raises(requests.HTTPError, match="404"):
        zm_detect_event(events, "1234", {**OPTIONS, "frame_set": "7"})
    token = events.token("zm", PASSWORD)
    bad = events.call(
        "POST", "/api/v1/detect/object?type=object", json.dumps({"stream": "1; rm"}).encode(),
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )  # fmt: skip
    assert bad.status == 400 and bad.json()["msg"] == "stream must be a ZoneMinder event id"
    # A server without a portal says so; a stranger's request fetches nothing.
    with pytest.raises(requests.HTTPError, match="400"):
        zm_detect_event(server, "1234", OPTIONS)
    before = len(standin.frames)
    anonymous = events.call(
        "POST", "/api/v1/detect/object", json.dumps({"stream": "1234"}).encode(),
        {"Content-Type": "application/json"},
    )  # fmt: skip
    assert anonymous.status == 401 and len(standin.frames) == before


def test_zm_detect_face_names_and_named_faces(
    event_server: tuple[LiveServer, StandIn], photos: Path
) -> None:
    """zm_detect 5.x and 6.0: type=face answers each face with a name (or unknown), and
    type=face_names lists the known people as {"names": [...]}."""
    server, _ = event_server
    engine = server.app[ENGINE]
    couple = (photos / "gender_detection_input.jpg").read_bytes()
    enroll(engine, engine.runtime.gallery, "Kumail", couple, "couple", largest=True)
    try:
        token = server.token("zm", PASSWORD)
        headers = {"Authorization": f"Bearer {token}"}
        names = requests.post(
            f"{server.url}/api/v1/detect/object?type=face_names", headers=headers, timeout=60
        )
        assert names.status_code == 200 and names.json() == {"names": ["Kumail"]}
        group = (photos / "face_detection_input.jpg").read_bytes()
        faces = requests.post(
            f"{server.url}/api/v1/detect/object?type=face", headers=headers, timeout=60,
            files={"file": ("image.jpg", group)},
        ).json()  # fmt: skip
        labels = [f["label"] for f in sorted(faces, key=lambda f: f["box"][0])]
        assert labels == ["unknown", "unknown", "Kumail", "unknown", "unknown"]
        event = zm_detect_event(server, "1234", {**OPTIONS, "frame_set": "alarm"}, "face")
        assert "Kumail" in event["matched_data"]["labels"]
    finally:
        engine.runtime.gallery.remove("Kumail")


# -- the event path's limits: slots, time, requests per user, logins ---------------------
TIMEOUT = 4.0  # the limited server's --zm-event-timeout
WAITING = {"frame_set": "7,8", "max_attempts": 3, "sleep_between_attempts": 5}  # 404s: 20 s


@pytest.fixture(scope="module")
def limited(
    store: ModelCache, photos: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveServer, StandIn]]:
    """A small server (one worker, two slots, 2 s in line at most) whose event requests
    wait 4 s at most, two per user."""
    standin = StandIn(photos)
    data = tmp_path_factory.mktemp("zm-limits")
    portal = ZoneMinderSettings(
        portal=standin.portal, user="admin", password="zm secret", event_timeout=TIMEOUT,
        events_per_user=2,
    )  # fmt: skip
    config = ServerConfig(
        models=("objects",), url_networks=LOOPBACK, max_queue=1, max_wait=2.0,
        dialects={"mlapi": portal},
    )  # fmt: skip
    with Engine(store, RuntimeConfig(workers=1), gallery=Gallery(data / "gallery.json")) as e:
        live = LiveServer(e, data, config)
        for user in ("zm", "zm2"):
            live.users.add(user, PASSWORD)
        live.key = live.token("zm", PASSWORD)
        warm = live.upload("/api/v1/detect/object", {"file": photo(photos)}, live.key)
        assert warm.status == 200  # the model is loaded before anything is timed
        yield live, standin
        live.stop()
    standin.server.stop()


def photo(photos: Path) -> bytes:
    return (photos / "object_detection_input.jpg").read_bytes()


def event_call(server: LiveServer, token: str, options: dict[str, Any]) -> tuple[Answer, float]:
    """An event request as zm_detect sends it, bounded to 20 s; (answer, seconds)."""
    started = time.monotonic()
    answer = requests.post(
        f"{server.url}/api/v1/detect/object?type=object&response_format=zm_detect",
        headers={"Authorization": f"Bearer {token}"},
        json={"stream": "1234", "stream_options": options},
        timeout=20,
    )
    seconds = time.monotonic() - started
    return Answer(answer.status_code, answer.content, dict(answer.headers)), seconds


def fetched(standin: StandIn, count: int) -> None:
    """Wait (5 s at most) until the portal has been asked for `count` more frames."""
    target = len(standin.frames) + count
    for _ in range(100):
        if len(standin.frames) >= target:
            return
        time.sleep(0.05)
    raise AssertionError("the event requests never reached the portal")


def test_event_requests_waiting_on_the_portal_hold_no_slot(
    limited: tuple[LiveServer, StandIn], photos: Path
) -> None:
    server, standin = limited
    other = server.token("zm2", PASSWORD)
    with ThreadPoolExecutor(4) as pool:
        waiting = [
            pool.submit(event_call, server, token, WAITING)
            for token in (server.key, server.key, other, other)
        ]  # four event requests on a two-slot server, each waiting on 404s
        fetched(standin, 2)  # (on a server where they hold a slot, two have them both)
        started = time.monotonic()
        plain = server.upload("/api/v1/detect/object", {"file": photo(photos)}, server.key)
        seconds = time.monotonic() - started
        assert plain.status == 200 and {"dog", "person"} <= {d["label"] for d in plain.json()}
        assert seconds < 3.0 and not any(f.done() for f in waiting)  # answered while they wait
        for future in waiting:
            answer, took = future.result()
            assert answer.status == 504 and took < TIMEOUT + 3
    assert server.app[SERVER].admitted == 0  # every slot came back


def test_an_event_request_waits_at_most_the_event_timeout(
    limited: tuple[LiveServer, StandIn],
) -> None:
    server, standin = limited
    greedy = {"frame_set": ",".join(str(n) for n in range(10, 20)), "max_attempts": 99,
              "sleep_between_attempts": 99, "delay": 99}  # fmt: skip  # clamped: 105 s
    before = len(standin.frames)
    answer, seconds = event_call(server, server.key, greedy)
    assert answer.status == 504 and seconds < TIMEOUT + 3
    assert answer.json()["msg"] == "ZoneMinder gave no frame of event 1234 within 4 s"
    assert len(standin.frames) == before  # the delay (clamped to 5 s) outlasted the 4 s
    # A frame already detected is the answer when time runs out (`most` looks further).
    answer, seconds = event_call(server, server.key, {**WAITING, "frame_set": "snapshot,7,8",
                                                       "strategy": "most"})  # fmt: skip
    assert answer.status == 200 and seconds < TIMEOUT + 3
    assert answer.json()["matched_data"]["frame_id"] == "snapshot"


def test_one_user_has_at_most_two_event_requests_in_flight(
    limited: tuple[LiveServer, StandIn],
) -> None:
    server, standin = limited
    with ThreadPoolExecutor(2) as pool:
        waiting = [pool.submit(event_call, server, server.key, WAITING) for _ in range(2)]
        fetched(standin, 2)
        third, seconds = event_call(server, server.key, WAITING)
        assert third.status == 429 and seconds < 1.0
        assert 1 <= int(third.headers["Retry-After"]) <= TIMEOUT
        assert "at most 2 per user" in third.json()["msg"]
        elsewhere, _ = event_call(server, server.token("zm2", PASSWORD), {"frame_set": "7"})
        assert elsewhere.status == 404  # another user's request is not refused
        assert [f.result()[0].status for f in waiting] == [504, 504]
    again, _ = event_call(server, server.key, {"frame_set": "snapshot"})
    assert again.status == 200  # the count went down as they finished


def test_a_portal_refusing_every_token_costs_one_fresh_login(
    limited: tuple[LiveServer, StandIn],
) -> None:
    server, standin = limited
    before = standin.logins
    standin.refuse_all = True
    try:
        options = {"frame_set": "snapshot,alarm,3", "max_attempts": 3, "sleep_between_attempts": 0}
        answer, _ = event_call(server, server.key, options)
    finally:
        standin.refuse_all = False
    assert answer.status == 502
    assert answer.json()["msg"] == "ZoneMinder refused the login's token (HTTP 401)"
    assert standin.logins - before <= 2  # the first login (if any), and one fresh one


@pytest.mark.parametrize(
    ("login", "reason"),
    [
        ({"access_token": "t", "access_token_expires": "abc"}, "no valid access_token_expires"),
        ({"access_token": "t", "access_token_expires": [1]}, "no valid access_token_expires"),
        ({"access_token": "t", "access_token_expires": "nan"}, "no valid access_token_expires"),
        (["access_token", "t"], "login answer is not a JSON object"),
    ],
)
def test_a_malformed_login_answer_is_a_502(
    limited: tuple[LiveServer, StandIn], login: object, reason: str
) -> None:
    server, standin = limited
    standin.revoke()  # the server logs in again, and reads this answer
    standin.answer = login
    try:
        answer, _ = event_call(server, server.key, {"frame_set": "snapshot"})
    finally:
        standin.answer = None
    assert answer.status == 502 and reason in answer.json()["msg"]
