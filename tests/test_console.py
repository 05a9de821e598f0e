"""The web console's server side, over real HTTP with no models: its page and files, the
session cookie, CSRF, sign-out, the login limiter, keys and status. The browser tests
(test_console_browser) drive the page itself."""

from __future__ import annotations

import configparser
import json
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml
from deepstack.core import URL_BASE_VISION
from servers import Answer, LiveServer

from mlapi.config import ServerConfig
from mlapi.console.routes import adduser_command
from mlapi.console.snippets import snippets
from mlapi.engine import Engine
from mlapi.images import encode_jpeg
from mlapi.store import ModelCache, catalog
from mlapi.store.store import MANIFEST, fingerprint
from mlapi.stores import open_stores
from mlapi.web.auth import CSRF_HEADER, SESSION_COOKIE
from mlapi.web.state import ENGINE, SERVER

PASSWORD = "correct horse battery"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LiveServer]:
    with Engine(ModelCache(tmp_path / "cache")) as engine:
        live = LiveServer(engine, tmp_path / "data", ServerConfig(models=()))
        live.users.add("alice", PASSWORD)
        live.users.add("bob", PASSWORD)
        try:
            yield live
        finally:
            live.stop()


class Browser:
    """What a browser keeps for the console: its cookie and the CSRF token it was given."""

    def __init__(self, server: LiveServer) -> None:
        self.server, self.cookie, self.csrf = server, "", ""

    def sign_in(self, user: str = "alice", password: str = PASSWORD, **headers: str) -> Answer:
        body = json.dumps({"username": user, "password": password}).encode()
        answer = self.server.call("POST", "/console/api/signin", body, {**JSON, **headers})
        if answer.status == 200:
            jar = SimpleCookie(answer.headers["Set-Cookie"])
            self.cookie, self.csrf = jar[SESSION_COOKIE].value, answer.json()["csrf"]
        return answer

    def call(self, method: str, path: str, document: object = None, csrf: bool = True) -> Answer:
        headers = {"Cookie": f"{SESSION_COOKIE}={self.cookie}"}
        if csrf and method != "GET":
            headers[CSRF_HEADER] = self.csrf
        body = None if document is None else json.dumps(document).encode()
        if body is not None:
            headers.update(JSON)
        return self.server.call(method, path, body, headers)


def test_the_page_runs_only_its_own_files(server: LiveServer) -> None:
    page = server.call("GET", "/")
    assert page.status == 200 and page.headers["Content-Type"].startswith("text/html")
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy
    assert "frame-ancestors 'none'" in policy

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.scripts: list[dict[str, str | None]] = []
            self.inline: list[str] = []
            self.links: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found = dict(attrs)
            if tag == "script":
                self.scripts.append(found)
            if tag == "link" and found.get("href"):
                self.links.append(str(found["href"]))
            self.inline += [k for k in found if k == "style" or k.startswith("on")]

    tags = Tags()
    tags.feed(page.body.decode())
    assert tags.scripts and all(
        str(s.get("src")).startswith("/console/static/") for s in tags.scripts
    )
    assert tags.inline == [] and all(h.startswith("/console/static/") for h in tags.links)
    for name in ("console.js", "console.css", "favicon.svg"):
        served = server.call("GET", f"/console/static/{name}")
        assert served.status == 200 and served.body
        assert b"http://" not in served.body.replace(b"http://www.w3.org/2000/svg", b"")
        assert b"https://" not in served.body  # nothing from elsewhere: it works offline
    assert server.call("GET", "/console/static/..%2F..%2Fserver.py").status == 404
    assert server.call("GET", "/console/static/index.html").status == 404  # only the list
    # The required names are there for people and tests.
    html = page.body.decode()
    for label in ("Username", "Password", "Photo", "Name", "Test photo", "Key name"):
        assert re.search(rf"<label for=\"[\w-]+\">{label}</label>", html), label
    for text in (">Sign in<", ">Try<", ">People<", ">Keys<", ">Status<", ">Add person<",
                 ">Create key<"):  # fmt: skip
        assert text in html, text


def test_sign_in_sets_a_strict_http_only_cookie(server: LiveServer) -> None:
    browser = Browser(server)
    answer = browser.sign_in()
    assert answer.status == 200 and answer.json()["user"] == "alice"
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http on loopback: the browser would drop it
    behind_tls = Browser(server).sign_in(**{"X-Forwarded-Proto": "https"})
    assert "Secure" in behind_tls.headers["Set-Cookie"]
    who = browser.call("GET", "/console/api/session").json()
    assert who["user"] == "alice" and who["csrf"] == browser.csrf
    assert server.call("GET", "/console/api/session").json()["user"] is None
    # The stored session is a digest: the file never holds the cookie's value.
    assert browser.cookie not in (server.data_dir / "sessions.json").read_text()


def test_only_the_pages_own_script_can_sign_in(server: LiveServer) -> None:
    """Another site's form cannot sign a visitor in as someone else (login CSRF)."""
    body = json.dumps({"username": "alice", "password": PASSWORD}).encode()
    as_form = server.call("POST", "/console/api/signin", body, {"Content-Type": "text/plain"})
    assert as_form.status == 415 and "Set-Cookie" not in as_form.headers
    elsewhere = Browser(server).sign_in(Origin="https://evil.example")
    assert elsewhere.status == 403 and "Set-Cookie" not in elsewhere.headers
    assert Browser(server).sign_in(Origin=server.url).status == 200


def test_wrong_passwords_meet_the_apis_limiter(server: LiveServer) -> None:
    browser = Browser(server)
    wrong = browser.sign_in(password="not it")
    assert wrong.status == 401 and wrong.json() == {"error": "invalid username or password"}
    for _ in range(4):
        browser.sign_in(password="not it")
    limited = browser.sign_in()  # even the right password, until the window passes
    assert limited.status == 429 and int(limited.headers["Retry-After"]) > 0
    assert server.login("alice", PASSWORD).status == 429  # one limiter for both doors
    assert Browser(server).sign_in("bob").status == 200  # another user is not locked out


def test_changes_need_the_csrf_token_and_reads_do_not(server: LiveServer) -> None:
    browser = Browser(server)
    browser.sign_in()
    assert browser.call("GET", "/console/api/keys").status == 200
    forged = browser.call("POST", "/console/api/keys", {"name": "evil"}, csrf=False)
    assert forged.status == 403 and "X-CSRF-Token" in forged.json()["error"]
    browser.csrf, real = "x" * 43, browser.csrf
    assert browser.call("POST", "/console/api/keys", {"name": "evil"}).status == 403
    browser.csrf = real
    assert browser.call("POST", "/console/api/keys", {"name": "good"}).status == 200
    # The same cookie reaches the API (the page detects through it), CSRF-checked alike.
    raw = browser.call("POST", "/api/v1/detect", csrf=False)
    assert raw.status == 403
    assert [k.name for k in server.users.api_keys()] == ["good"]


def test_sign_out_ends_the_session_on_the_server(server: LiveServer) -> None:
    browser = Browser(server)
    browser.sign_in()
    kept = browser.cookie
    out = browser.call("DELETE", "/console/api/session")
    assert out.status == 200 and "Max-Age=0" in out.headers["Set-Cookie"]
    browser.cookie = kept  # a copy of the cookie, replayed
    assert browser.call("GET", "/console/api/keys").status == 401
    assert browser.call("GET", "/console/api/session").status == 401


def test_a_new_password_ends_console_sessions(server: LiveServer) -> None:
    browser = Browser(server)
    browser.sign_in()
    server.users.set_password("alice", PASSWORD + " again")
    assert browser.call("GET", "/console/api/keys").status == 401


def test_keys_and_tokens_do_not_open_the_console_api(server: LiveServer) -> None:
    key = server.users.create_key("alice", "script")
    token = server.token("alice", PASSWORD)
    for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {token}"}):
        answer = server.call("GET", "/console/api/keys", headers=headers)
        assert answer.status == 401 and answer.json() == {"error": "sign in to the console first"}


def test_keys_are_made_listed_used_and_revoked_per_user(server: LiveServer) -> None:
    alice, bob = Browser(server), Browser(server)
    alice.sign_in()
    bob.sign_in("bob")
    made = alice.call("POST", "/console/api/keys", {"name": "frigate"}).json()
    key = made["key"]
    assert key.startswith("mlk_") and made["name"] == "frigate"
    assert {s["client"] for s in made["snippets"]} >= {
        "Home Assistant", "Frigate", "Double Take", "Blue Iris / Agent DVR",
        "ZoneMinder (zmeventnotification 7)", "HomeGallery", "DOODS",
    }  # fmt: skip
    filled = [s for s in made["snippets"] if key in s["text"]]
    assert len(filled) >= 5 and all(server.url in s["text"] or "ip_address" in s["text"]
                                    or "IP:" in s["text"] for s in filled)  # fmt: skip
    assert server.call("GET", "/api/v1/models", headers={"X-API-Key": key}).status == 200
    server.app[SERVER].flush_key_uses()  # what the server does every 30 s
    (listed,) = alice.call("GET", "/console/api/keys").json()["keys"]
    assert listed["name"] == "frigate" and listed["last_used"] >= listed["created"]
    assert "key" not in listed  # only ever shown once
    assert bob.call("GET", "/console/api/keys").json()["keys"] == []  # each sees their own
    assert bob.call("DELETE", f"/console/api/keys/{made['id']}").status == 404
    assert alice.call("DELETE", f"/console/api/keys/{made['id']}").status == 200
    assert server.call("GET", "/api/v1/models", headers={"X-API-Key": key}).status == 401
    assert alice.call("POST", "/console/api/keys", {"name": ""}).status == 400


def test_status_counts_what_was_just_asked(server: LiveServer) -> None:
    browser = Browser(server)
    browser.sign_in()
    key = server.users.create_key("alice", "probe")
    for _ in range(3):
        server.call("GET", "/api/v1/models", headers={"X-API-Key": key})
    status = browser.call("GET", "/console/api/status").json()
    assert status["ready"] is True and status["version"]
    routes = {r["route"]: r for r in status["routes"]}
    assert routes["/api/v1/models"]["requests"] == 3 and routes["/api/v1/models"]["mean_ms"] > 0
    assert status["history"] and status["history"][0]["requests"] >= 0
    # Where each loaded detector runs (the CPU here: --device's default).
    assert all(m["device"] == "cpu" for m in status["models"])
    metrics = server.call("GET", "/metrics", headers={"X-API-Key": key}).body.decode()
    assert 'mlapi_request_seconds_count{route="/api/v1/models"} 3' in metrics


def test_people_need_a_name_and_a_session(server: LiveServer) -> None:
    browser = Browser(server)
    browser.sign_in()
    assert browser.call("POST", "/console/api/people/new", {"name": "Ada"}).status == 200
    assert browser.call("POST", "/console/api/people/new", {"name": "Ada"}).status == 409
    assert browser.call("POST", "/console/api/people/new", {"name": " "}).status == 400
    listed = browser.call("GET", "/console/api/people").json()["people"]
    assert listed == [{"name": "Ada", "last_seen": None, "samples": []}]  # never seen yet
    assert browser.call("PUT", "/console/api/people/Ada", {"name": "Ada L"}).status == 200
    assert browser.call("DELETE", "/console/api/people/Ada%20L").status == 200
    assert browser.call("GET", "/console/api/samples/abc/face.jpg").status == 404
    assert browser.call("DELETE", "/console/api/samples/abc").status == 400
    assert server.call("GET", "/console/api/people").status == 401


def client_settings(url: str, key: str) -> dict[str, dict[str, Any]]:
    """Each snippet read the way its client reads it (PyYAML, configparser), down to the
    settings the client takes the server from: what a person pasting it would get."""
    read: dict[str, Any] = {}
    for s in snippets(url, key):
        document: Any
        if s.syntax == "yaml":
            document = yaml.safe_load(s.text)
        elif s.syntax == "ini":
            parser = configparser.ConfigParser(interpolation=None)
            parser.read_string(s.text)
            document = {name: dict(parser[name]) for name in parser.sections()}
        else:  # a settings screen: "Field: value" lines
            document = dict(line.split(": ", 1) for line in s.text.splitlines())
        read[s.client] = document
    (assistant,) = read["Home Assistant"]["image_processing"]
    (doods,) = read["DOODS"]["image_processing"]
    frigate = [d for d in read["Frigate"]["detectors"].values() if d["type"] == "deepstack"]
    return {
        # deepstack-python: http://{ip}:{port}/v1/vision, api_key in the form
        "Home Assistant": {
            "url": URL_BASE_VISION.format(ip=assistant["ip_address"], port=assistant["port"]),
            "key": assistant["api_key"],
            "platform": assistant["platform"],
        },
        "Frigate": {"url": frigate[0]["api_url"], "key": frigate[0]["api_key"]},
        "Double Take": read["Double Take"]["detectors"]["compreface"],
        "Blue Iris / Agent DVR": read["Blue Iris / Agent DVR"],
        # zm_detect 7.x flattens remote: into its settings; 5.x-6.0 reads [remote]
        "ZoneMinder (zmeventnotification 7)": read["ZoneMinder (zmeventnotification 7)"]["remote"],
        "ZoneMinder (zmeventnotification 5-6.0)": read["ZoneMinder (zmeventnotification 5-6.0)"][
            "remote"
        ],
        "HomeGallery": read["HomeGallery"]["extractor"]["apiServer"],
        "DOODS": {"url": doods["url"], "key": doods["auth_key"], "platform": doods["platform"]},
    }


def test_each_snippet_holds_this_server_where_its_client_reads_it() -> None:
    read = client_settings("http://nas.lan:5000", "mlk_1_abc")
    assert read["Home Assistant"] == {
        "url": "http://nas.lan:5000/v1/vision", "key": "mlk_1_abc", "platform": "deepstack_object"
    }  # fmt: skip
    assert read["Frigate"] == {
        "url": "http://nas.lan:5000/v1/vision/detection", "key": "mlk_1_abc"
    }  # fmt: skip
    assert read["Double Take"]["url"] == "http://nas.lan:5000"
    assert read["Double Take"]["key"] == "mlk_1_abc"
    assert read["Blue Iris / Agent DVR"]["IP"] == "nas.lan"
    assert read["Blue Iris / Agent DVR"]["Port"] == "5000"
    assert read["Blue Iris / Agent DVR"]["URL (Agent DVR)"] == "http://nas.lan:5000"
    for zm in ("ZoneMinder (zmeventnotification 7)", "ZoneMinder (zmeventnotification 5-6.0)"):
        assert read[zm]["ml_gateway"] == "http://nas.lan:5000/api/v1", zm
        assert read[zm]["ml_user"] and read[zm]["ml_password"], zm
    assert read["ZoneMinder (zmeventnotification 7)"]["ml_gateway_mode"] == "image"
    # HomeGallery's extractor.apiServer.url: anything else leaves it on its public server.
    assert read["HomeGallery"]["url"] == "http://nas.lan:5000/hg/mlk_1_abc"
    assert read["DOODS"] == {
        "url": "http://nas.lan:5000", "key": "mlk_1_abc", "platform": "doods"
    }  # fmt: skip
    assert {s.client for s in snippets("http://nas.lan:5000", "k")} == set(read)
    https = client_settings("https://vision.example.org", "k")
    (assistant,) = [
        s.text for s in snippets("https://vision.example.org", "k") if s.client == "Home Assistant"
    ]
    assert "plain http only" in assistant  # deepstack-python cannot reach an https URL
    assert https["HomeGallery"]["url"] == "https://vision.example.org/hg/k"


def test_each_snippet_reaches_this_server_with_its_key(server: LiveServer) -> None:
    """The request each client builds from its snippet reaches this server's route and
    its key is accepted there (no model is pulled in the fast tier: what comes back is
    the route's own answer, never 401 or 404)."""
    browser = Browser(server)
    browser.sign_in()
    made = browser.call("POST", "/console/api/keys", {"name": "clients"}).json()
    key = made["key"]
    shown = {s["client"]: s["text"] for s in made["snippets"]}
    assert shown == {s.client: s.text for s in snippets(server.url, key)}
    read = client_settings(server.url, key)
    jpeg = encode_jpeg(np.full((64, 64, 3), 128, np.uint8))

    def reached(answer: requests.Response) -> bool:
        """Past the key to the detectors: an answer, or the fast tier's "not pulled"."""
        return answer.status_code == 200 or "mlapi models pull" in answer.text

    assistant = read["Home Assistant"]
    deepstack = requests.post(
        assistant["url"] + "/detection", files={"image": jpeg}, data={"api_key": assistant["key"]}
    )
    assert reached(deepstack), deepstack.text
    frigate = read["Frigate"]
    answer = requests.post(frigate["url"], data={"api_key": frigate["key"]}, files={"image": jpeg})
    assert reached(answer), answer.text
    compreface = read["Double Take"]
    answer = requests.post(
        compreface["url"] + "/api/v1/recognition/recognize",
        headers={"x-api-key": compreface["key"]},
        files={"file": jpeg},
        params={"det_prob_threshold": 0.8},
    )
    assert reached(answer), answer.text
    gallery = read["HomeGallery"]["url"]
    for stage in ("objects", "faces", "embeddings"):
        answer = requests.post(
            f"{gallery}/{stage}", data=jpeg, headers={"Content-Type": "image/jpeg"}
        )
        assert reached(answer), (stage, answer.text)
    doods = read["DOODS"]
    listed = requests.get(doods["url"] + "/detectors", headers={"doods-auth-key": doods["key"]})
    assert listed.status_code == 200 and "detectors" in listed.json()
    server.users.add("zm", PASSWORD)
    for zm in ("ZoneMinder (zmeventnotification 7)", "ZoneMinder (zmeventnotification 5-6.0)"):
        gateway = read[zm]["ml_gateway"]
        login = requests.post(gateway + "/login", json={"username": "zm", "password": PASSWORD})
        assert login.status_code == 200 and login.json()["access_token"], zm
    assert read["Blue Iris / Agent DVR"]["URL (Agent DVR)"] == server.url


def test_replicas_on_one_database_share_console_sessions(tmp_path: Path, database: str) -> None:
    """Signed in through one replica, the browser is signed in on all; signed out through
    one, it is signed out on all at once."""
    with Engine(ModelCache(tmp_path / "cache")) as engine:
        a = LiveServer(
            engine, tmp_path / "a", ServerConfig(models=()), open_stores(database=database)
        )
        b = LiveServer(
            engine, tmp_path / "b", ServerConfig(models=()), open_stores(database=database)
        )
        try:
            a.users.add("alice", PASSWORD)
            on_a = Browser(a)
            on_a.sign_in()
            on_b = Browser(b)
            on_b.cookie, on_b.csrf = on_a.cookie, on_a.csrf
            made = on_b.call("POST", "/console/api/keys", {"name": "from b"})
            assert made.status == 200
            assert [k["name"] for k in on_a.call("GET", "/console/api/keys").json()["keys"]] == [
                "from b"
            ]
            assert on_a.call("DELETE", "/console/api/session").status == 200
            assert on_b.call("GET", "/console/api/keys").status == 401
        finally:
            for server in (a, b):
                server.stop()
                server.stores.close()


def test_detectors_say_which_can_run_and_the_command_for_the_rest(server: LiveServer) -> None:
    """A detector whose model is not pulled is offered as not runnable, with the models it
    lacks and the command that pulls them; nothing is loaded to find out."""
    browser = Browser(server)
    browser.sign_in()
    cache = server.app[ENGINE].store
    entry = catalog.find("nanodet")
    assert entry is not None
    pretend = cache.models / "nanodet"  # "pulled", as far as the cache can tell
    pretend.mkdir(parents=True)
    (pretend / MANIFEST).write_text(json.dumps({"fingerprint": fingerprint(entry)}))
    rows = {d["name"]: d for d in browser.call("GET", "/console/api/detectors").json()["detectors"]}
    objects, faces, recognize = rows["objects"], rows["faces"], rows["recognize"]
    assert objects["runnable"] and objects["missing"] == [] and objects["command"] is None
    assert objects["default"]  # ticked at first: it can run
    assert not faces["runnable"] and faces["missing"] == ["blazeface-full"]
    assert faces["command"] == "mlapi models pull blazeface-full"
    assert not faces["default"]  # never ticked while it cannot run
    # What recognition needs counts: the face detector's model and the faceprint's.
    assert recognize["missing"] == ["blazeface-full", "dlib-face"]
    assert recognize["command"] == "mlapi models pull blazeface-full dlib-face"
    assert recognize["needs"] == ["faces", "faceprint"]
    # A model named by an option's default (yolo's) counts too.
    assert rows["yolo"]["missing"] == ["yolov3-tiny"] and not rows["yolo"]["runnable"]
    # Plain names, the technical one kept; a line on what each finds.
    assert (recognize["title"], faces["title"]) == ("Face identity", "Faces")
    assert rows["faceprint"]["title"] == "Face fingerprint"
    assert rows["embeddings"]["title"] == "Image fingerprint"
    assert all(d["title"] and d["description"] and d["technical"] for d in rows.values())
    assert server.app[ENGINE]._loaded == {}  # nothing was loaded to find out
    options = {o["name"]: o for o in objects["options"]}
    assert options and all(
        o["type"] in ("number", "integer", "boolean", "text") for o in options.values()
    )


def test_a_server_with_no_users_says_how_to_make_one(tmp_path: Path) -> None:
    with Engine(ModelCache(tmp_path / "cache")) as engine:
        empty = LiveServer(engine, tmp_path / "data", ServerConfig(models=()))
        try:
            said = empty.call("GET", "/console/api/session").json()
            assert said["user"] is None and said["users"] is False
            assert said["adduser"] == "./run mlapi adduser NAME"  # the tests run from a checkout
            empty.users.add("alice", PASSWORD)
            assert "users" not in empty.call("GET", "/console/api/session").json()
        finally:
            empty.stop()


def test_the_adduser_command_is_the_one_for_how_the_server_runs(tmp_path: Path) -> None:
    checkout, venv = tmp_path / "checkout", tmp_path / "checkout" / ".venv"
    venv.mkdir(parents=True)
    (checkout / "run").write_text("#!/bin/sh\n")
    (checkout / "pyproject.toml").write_text("")
    root = tmp_path / "root"
    root.mkdir()
    installed = tmp_path / "usr"
    assert adduser_command(venv, root) == "./run mlapi adduser NAME"
    assert adduser_command(installed, root) == "mlapi adduser NAME"
    (root / ".dockerenv").touch()
    assert adduser_command(installed, root) == "docker exec -it CONTAINER mlapi adduser NAME"
    (root / "run").mkdir()
    (root / "run" / ".containerenv").touch()
    assert adduser_command(installed, root) == "podman exec -it CONTAINER mlapi adduser NAME"


def test_plates_are_listed_added_and_removed_from_the_console(server: LiveServer) -> None:
    browser = Browser(server)
    browser.sign_in()
    assert browser.call("GET", "/console/api/plates").json() == {"plates": []}
    car = browser.call("POST", "/console/api/plates", {"name": "Van", "plate": "ab-123 cd"})
    assert car.status == 200 and car.json() == {"name": "Van", "plate": "AB123CD"}
    fleet = browser.call("POST", "/console/api/plates", {"name": "Fleet", "pattern": "FL[0-9]{3}"})
    assert fleet.json() == {"name": "Fleet", "pattern": "FL[0-9]{3}"}
    listed = browser.call("GET", "/console/api/plates").json()["plates"]
    assert listed == [
        {"name": "Fleet", "pattern": "FL[0-9]{3}"},
        {"name": "Van", "plate": "AB123CD"},
    ]
    # The API's clients see the same plates.
    key = server.users.create_key("alice", "script")
    api = server.call("GET", "/api/v1/plates", headers={"X-API-Key": key}).json()["plates"]
    assert api == listed
    gone = browser.call("DELETE", "/console/api/plates/Van")
    assert gone.status == 200 and gone.json() == {"name": "Van", "removed": 1}
    assert browser.call("GET", "/console/api/plates").json()["plates"] == [listed[0]]
    again = browser.call("DELETE", "/console/api/plates/Van")
    assert again.status == 404 and "Van" in again.json()["error"]


def test_a_bad_plate_is_refused_in_words(server: LiveServer) -> None:
    browser = Browser(server)
    browser.sign_in()
    bad = browser.call("POST", "/console/api/plates", {"name": "Fleet", "pattern": "FL[0-9"})
    assert bad.status == 400 and "not a regular expression" in bad.json()["error"]
    both = browser.call("POST", "/console/api/plates", {"name": "X", "plate": "A1", "pattern": "A"})
    assert both.status == 400 and "one of them" in both.json()["error"]
    stray = browser.call("POST", "/console/api/plates", {"name": "X", "colour": "red"})
    assert stray.status == 400 and "colour" in stray.json()["error"]
    browser.call("POST", "/console/api/plates", {"name": "Van", "plate": "AB123CD"})
    taken = browser.call("POST", "/console/api/plates", {"name": "Car", "plate": "AB 123 CD"})
    assert taken.status == 409 and "Van" in taken.json()["error"]
    assert browser.call("GET", "/console/api/plates").json()["plates"] == [
        {"name": "Van", "plate": "AB123CD"}
    ]


def test_plates_in_the_console_need_a_session_and_the_csrf_token(server: LiveServer) -> None:
    key = server.users.create_key("alice", "script")
    token = server.token("alice", PASSWORD)
    for headers in ({"X-API-Key": key}, {"Authorization": f"Bearer {token}"}, {}):
        for method, path in (
            ("GET", "/console/api/plates"),
            ("POST", "/console/api/plates"),
            ("DELETE", "/console/api/plates/Van"),
        ):
            body = json.dumps({"name": "Van", "plate": "AB1"}).encode()
            answer = server.call(method, path, body, {**JSON, **headers})
            assert answer.status == 401, (method, path, headers)
    browser = Browser(server)
    browser.sign_in()
    forged = browser.call(
        "POST", "/console/api/plates", {"name": "Van", "plate": "AB1"}, csrf=False
    )
    assert forged.status == 403 and "X-CSRF-Token" in forged.json()["error"]
    browser.call("POST", "/console/api/plates", {"name": "Van", "plate": "AB1"})
    forged = browser.call("DELETE", "/console/api/plates/Van", csrf=False)
    assert forged.status == 403
    assert browser.call("GET", "/console/api/plates").json()["plates"] == [
        {"name": "Van", "plate": "AB1"}
    ]


def test_the_console_plate_routes_are_documented(server: LiveServer) -> None:
    paths = server.call("GET", "/api/v1/openapi.json").json()["paths"]
    assert {"get", "post"} <= set(paths["/console/api/plates"])
    assert "delete" in paths["/console/api/plates/{name}"]
    added = paths["/console/api/plates"]["post"]
    assert "console session" in added["summary"]
    schema = added["requestBody"]["content"]["application/json"]["schema"]
    assert set(schema["properties"]) == {"name", "plate", "pattern"}
