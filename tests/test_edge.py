"""What a request says about itself, on a real server with no models: keyless networks
closed to other sites' pages, the real client behind a real HAProxy, odd Host headers,
text that is not text in path parameters, and images priced by their pixels.
(Issue 31, items 2, 3, 8, 9 and 10; the rules themselves are in mlapi/edge.py.)"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import uuid
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import services
from servers import Answer, LiveServer
from test_console import JSON, PASSWORD, Browser

from mlapi import edge
from mlapi.config import ServerConfig
from mlapi.engine import Engine
from mlapi.store import ModelCache
from mlapi.stores import open_stores

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


def multipart(fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    )
    return body + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Served(LiveServer):
    """A server with no models over the stores in `folder` (or `database`), with alice and
    her key; its engine's gallery is the stores' (as `mlapi serve` builds it)."""

    def __init__(self, folder: Path, database: str | None = None, **config: Any) -> None:
        stores = open_stores(folder, database=database)
        self.engine = Engine(ModelCache(folder / "cache"), gallery=stores.faces)
        super().__init__(self.engine, folder, ServerConfig(models=(), **config), stores)
        self.users.add("alice", PASSWORD)
        self.key = self.users.create_key("alice", "test")

    def stop(self) -> None:
        super().stop()
        self.engine.close()
        self.stores.close()


# -- item 2: keyless networks are not open to any web page ---------------------------------
def test_a_page_on_another_site_cannot_change_the_gallery_of_a_keyless_network(
    tmp_path: Path,
) -> None:
    server = Served(tmp_path, keyless_networks=LOOPBACK)
    try:
        faces = server.stores.faces
        for name in ("Ann", "Bob", "Cy"):
            faces.add(name, np.ones(128, np.float32) / np.sqrt(128), "dlib")
        body, content_type = multipart({"userid": "Ann"})

        def delete(**headers: str) -> Answer:
            sent = {"Content-Type": content_type, **headers}
            return server.call("POST", "/v1/vision/face/delete", body, sent)

        # What fetch(..., {mode: "no-cors"}) from another site's page sends.
        refused = delete(Origin="http://evil.example", **{"Sec-Fetch-Site": "cross-site"})
        assert refused.status == 403
        assert refused.json()["success"] is False and "another site" in refused.json()["error"]
        assert delete(Origin="null").status == 403  # a sandboxed frame
        assert delete(**{"Sec-Fetch-Site": "same-site"}).status == 403  # a sibling host
        assert "Ann" in faces.names()
        # Cameras, Home Assistant and curl send no Origin: unchanged.
        assert delete().status == 200 and "Ann" not in faces.names()
        # The server's own origin (a page it serves) is not another site.
        body, content_type = multipart({"userid": "Bob"})
        assert delete(Origin=server.url, **{"Sec-Fetch-Site": "same-origin"}).status == 200
        assert "Bob" not in faces.names()
        # Reading stays open to the network, as before (a GET carries no change).
        listed = server.call("GET", "/v1/server/status/ping", headers={"Origin": "http://x.y"})
        assert listed.status == 200
        # A request with its key is the key's owner's choice, not the network's.
        body, content_type = multipart({"userid": "Cy", "api_key": server.key})
        assert delete(Origin="http://evil.example").status == 200
    finally:
        server.stop()


# -- item 3: behind a proxy, the limiter counts the real client ----------------------------
class FromAddress(http.client.HTTPConnection):
    """A client on its own loopback address (127.0.0.x): another machine behind the proxy."""

    def __init__(self, port: int, source: str) -> None:
        super().__init__("127.0.0.1", port, timeout=30, source_address=(source, 0))


def login(port: int, source: str, user: str, password: str, **headers: str) -> int:
    connection = FromAddress(port, source)
    body = json.dumps({"username": user, "password": password})
    connection.request("POST", "/api/v1/login", body, {**JSON, **headers})
    status = connection.getresponse().status
    connection.close()
    return status


def test_behind_haproxy_one_guesser_locks_out_only_itself(tmp_path: Path) -> None:
    server = Served(tmp_path, trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),))
    proxy = services.HAProxy([server.port])
    try:
        # 20 failed logins from one machine behind the proxy (the limiter's per-address cap),
        # each with a forged X-Forwarded-For that HAProxy's own hop comes after.
        for n in range(24):
            status = login(proxy.port, "127.0.0.2", f"user{n % 6}", "wrong password",
                           **{"X-Forwarded-For": "203.0.113.9"})  # fmt: skip
            assert status in (401, 429)
        assert login(proxy.port, "127.0.0.2", "alice", PASSWORD) == 429  # that machine: locked
        assert login(proxy.port, "127.0.0.3", "alice", PASSWORD) == 200  # everyone else: not
        # Straight to the server (not through a trusted proxy), the header is not believed:
        # the forger is counted under its own address, and cannot pose as another.
        for _ in range(20):
            login(server.port, "127.0.0.4", "alice", "wrong password",
                  **{"X-Forwarded-For": "127.0.0.5"})  # fmt: skip
        assert login(server.port, "127.0.0.4", "alice", PASSWORD) == 429
        assert login(server.port, "127.0.0.5", "alice", PASSWORD) == 200
    finally:
        proxy.close()
        server.stop()


def test_keyless_networks_see_the_client_behind_a_trusted_proxy(tmp_path: Path) -> None:
    server = Served(
        tmp_path,
        keyless_networks=(ipaddress.ip_network("127.0.0.2/32"),),
        trusted_proxies=(ipaddress.ip_network("127.0.0.1/32"),),
    )
    proxy = services.HAProxy([server.port])
    try:
        body, content_type = multipart({})

        def face_list(port: int, source: str, **headers: str) -> int:
            connection = FromAddress(port, source)
            sent = {"Content-Type": content_type, **headers}
            connection.request("POST", "/v1/vision/face/list", body, sent)
            status = connection.getresponse().status
            connection.close()
            return status

        assert face_list(proxy.port, "127.0.0.2") == 200  # the keyless machine, proxied
        assert face_list(proxy.port, "127.0.0.3") == 401  # another one: the proxy is no key
        assert face_list(proxy.port, "127.0.0.3", **{"X-Forwarded-For": "127.0.0.2"}) == 401
        assert face_list(server.port, "127.0.0.3", **{"X-Forwarded-For": "127.0.0.2"}) == 401
    finally:
        proxy.close()
        server.stop()


@pytest.mark.parametrize(
    ("remote", "xff", "forwarded", "client"),
    [
        ("10.0.0.1", ["1.2.3.4"], [], "1.2.3.4"),
        ("10.0.0.1", ["6.6.6.6, 1.2.3.4"], [], "1.2.3.4"),  # the forged hop is left of ours
        ("10.0.0.1", ["1.2.3.4, 10.0.0.2"], [], "1.2.3.4"),  # two proxies of ours
        ("10.0.0.1", ["1.2.3.4", "10.0.0.2"], [], "1.2.3.4"),  # one header per hop
        ("10.0.0.1", [], ['for=1.2.3.4;proto=https, for="[2001:db8::1]:80"'], "2001:db8::1"),
        ("10.0.0.1", ["garbage"], [], "10.0.0.1"),  # unreadable: counted as the proxy
        ("10.0.0.1", [], [], "10.0.0.1"),
        ("9.9.9.9", ["1.2.3.4"], [], "9.9.9.9"),  # not a proxy of ours: not believed
    ],
)
def test_the_client_is_the_rightmost_untrusted_hop(
    remote: str, xff: list[str], forwarded: list[str], client: str
) -> None:
    trusted = (ipaddress.ip_network("10.0.0.0/24"),)
    assert edge.client_address(remote, xff, forwarded, trusted) == client
    assert edge.client_address(remote, xff, forwarded, ()) == remote


# -- item 8: valid text only reaches the database -------------------------------------------
STORES = ["files", "postgresql"]


@pytest.mark.parametrize("backend", STORES)
def test_a_nul_byte_in_any_path_parameter_is_a_400(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database = request.getfixturevalue("database") if backend == "postgresql" else None
    server = Served(tmp_path, database)
    try:
        browser = Browser(server)
        assert browser.sign_in().status == 200
        routes = {
            (route.method, info["formatter"])
            for route in server.app.router.routes()
            if route.resource is not None
            and "formatter" in (info := route.resource.get_info())
            and route.method != "HEAD"
        }
        assert len(routes) >= 8
        for method, formatter in sorted(routes):
            path = formatter.replace("{", "").replace("}", "")
            path = "/".join(p if "{" not in q else "a%00b" for p, q in
                            zip(path.split("/"), formatter.split("/"), strict=True))  # fmt: skip
            key = {"Authorization": f"Bearer {server.key}"}
            for answer in (
                server.call(method, path, b"{}", {**key, **JSON}),
                browser.call(method, path, {}),
            ):
                assert answer.status == 400, (method, path, answer.status, answer.body[:200])
                assert b"control characters" in answer.body
        # Query and JSON strings too.
        key = {"Authorization": f"Bearer {server.key}", **JSON}
        added = server.call(
            "POST", "/api/v1/recognition/subjects", b'{"subject": "a\\u0000b"}', key
        )
        assert added.status == 400
        listed = server.call("GET", "/api/v1/recognition/faces?subject=a%00b", None, key)
        assert listed.status == 400
        renamed = browser.call("PUT", "/console/api/people/nobody", {"name": "x\u0000"})
        assert renamed.status == 400
    finally:
        server.stop()


@pytest.mark.parametrize("override", ["\u202e", "\u202a", "\u2066", "\u2069"])
def test_names_and_labels_cannot_turn_the_text_around(override: str, tmp_path: Path) -> None:
    server = Served(tmp_path)
    try:
        browser = Browser(server)
        assert browser.sign_in().status == 200
        key = {"Authorization": f"Bearer {server.key}", **JSON}
        name = f"{override}enoJ"
        subject = json.dumps({"subject": name}).encode()
        created = server.call("POST", "/api/v1/recognition/subjects", subject, key)
        assert created.status == 400 and "direction" in created.json()["message"]
        assert browser.call("POST", "/console/api/keys", {"name": name}).status == 400
        assert server.stores.faces.names() == []
        assert [k.name for k in server.users.api_keys()] == ["test"]
    finally:
        server.stop()


# -- item 9: odd Host headers ----------------------------------------------------------------
def raw_request(
    port: int, method: str, path: str, host: str, body: bytes = b""
) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        )
        sock.sendall(head.encode() + body)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    status_line, _, rest = received.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize("host", ["x:abc", "127.0.0.1:99999", "[::1", "a b", "x:0", "[zz]:80"])
def test_an_odd_host_header_is_a_400_on_every_route(host: str, tmp_path: Path) -> None:
    server = Served(tmp_path)
    try:
        paths = {
            (route.method, route.resource.canonical.replace("{", "").replace("}", ""))
            for route in server.app.router.routes()
            if route.resource is not None and route.method != "HEAD"
        }
        for method, path in sorted(paths):
            status, body = raw_request(server.port, method, path, host, b"{}")
            assert status == 400, (method, path, status, body[:200])
        for good in ("127.0.0.1", f"127.0.0.1:{server.port}", "[::1]:80", "vision.lan"):
            assert raw_request(server.port, "GET", "/health", good)[0] == 200
        # An Origin of the same shape is another site's (it was a 500 at sign-in).
        signin = json.dumps({"username": "alice", "password": PASSWORD}).encode()
        odd = server.call(
            "POST", "/console/api/signin", signin, {**JSON, "Origin": f"http://{host}"}
        )
        assert odd.status == 403
    finally:
        server.stop()


def test_the_console_snippets_name_the_configured_server_not_the_clients_host(
    tmp_path: Path,
) -> None:
    for public_url, expected in (
        ("", None),
        ("https://vision.lan:8443", "https://vision.lan:8443"),
    ):
        server = Served(tmp_path / (public_url and "public"), public_url=public_url)
        try:
            browser = Browser(server)
            assert browser.sign_in().status == 200
            cookie = {"Cookie": f"mlapi_session={browser.cookie}"}
            status, body = 0, b""
            with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
                sock.sendall(
                    b"GET /console/api/keys HTTP/1.1\r\nHost: evil.example:80\r\n"
                    + f"Cookie: {cookie['Cookie']}\r\nConnection: close\r\n\r\n".encode()
                )
                received = b""
                while chunk := sock.recv(65536):
                    received += chunk
            status = int(received.split(b" ", 2)[1])
            body = received.partition(b"\r\n\r\n")[2]
            assert status == 200
            text = json.dumps(json.loads(body)["snippets"])
            assert "evil.example" not in text
            assert (expected or f"http://127.0.0.1:{server.port}") in text
        finally:
            server.stop()


# -- item 10: the console's work pays by pixels ----------------------------------------------
def test_every_route_that_decodes_an_image_prices_it_by_its_pixels(tmp_path: Path) -> None:
    server = Served(tmp_path)
    priced: list[float] = []
    run_async = server.engine.run_async

    async def recording(fn: Any, *args: Any, cost: float = 0.0) -> Any:
        priced.append(cost)
        return await run_async(fn, *args, cost=cost)

    server.engine.run_async = recording  # type: ignore[method-assign]
    try:
        browser = Browser(server)
        assert browser.sign_in().status == 200
        flat = cv2.imencode(".png", np.zeros((4000, 4000, 3), np.uint8))[1].tobytes()
        assert len(flat) < 100_000  # 16 megapixels in a few bytes
        headers = {
            "Cookie": f"mlapi_session={browser.cookie}",
            "X-CSRF-Token": browser.csrf,
            "Content-Type": "image/png",
        }
        answer = server.call("POST", "/console/api/preview", flat, headers)
        assert answer.status == 200 and answer.headers["Content-Type"] == "image/jpeg"
        assert priced == [16_000_000]  # not 4 × its bytes, which put it ahead of camera tiles
    finally:
        server.engine.run_async = run_async  # type: ignore[method-assign]
        server.stop()
