"""Run a real mlapi server on loopback in a background thread, and call it over HTTP."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from mlapi.config import ServerConfig
from mlapi.engine import Engine
from mlapi.sightings.settings import FaceMemory
from mlapi.stores import Stores, open_stores
from mlapi.web.app import create_app
from mlapi.web.logs import AccessLog
from mlapi.web.state import SERVER


@dataclass
class Answer:
    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return json.loads(self.body)


class LiveServer:
    def __init__(
        self,
        engine: Engine,
        data_dir: Path,
        config: ServerConfig | None = None,
        stores: Stores | None = None,
        memory: FaceMemory | None = None,
    ) -> None:
        self.key = ""  # an API key a test module made for its clients
        self.stores = stores or open_stores(data_dir)
        self.users = self.stores.accounts
        self.data_dir = data_dir
        self.app = create_app(engine, self.stores, config or ServerConfig(), memory=memory)
        self.tokens = self.app[SERVER].tokens
        self.loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._started.wait(60)
        self.url = f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.runner = web.AppRunner(self.app, shutdown_timeout=5, access_log_class=AccessLog)
        self.loop.run_until_complete(self.runner.setup())
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = self.runner.addresses[0][1]
        self._started.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)

    # -- calling -------------------------------------------------------------------------
    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        request = urllib.request.Request(
            self.url + path, data=body, method=method, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return Answer(response.status, response.read(), dict(response.headers))
        except urllib.error.HTTPError as exc:
            return Answer(exc.code, exc.read(), dict(exc.headers))

    def login(self, user: str, password: str) -> Answer:
        body = json.dumps({"username": user, "password": password}).encode()
        return self.call("POST", "/api/v1/login", body, {"Content-Type": "application/json"})

    def token(self, user: str, password: str) -> str:
        return str(self.login(user, password).json()["access_token"])

    def upload(
        self,
        path: str,
        files: dict[str, bytes],
        token: str | None = None,
        fields: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        body, content_type = multipart(files, fields or {})
        all_headers = {"Content-Type": content_type, **(headers or {})}
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        return self.call("POST", path, body, all_headers)


def multipart(files: dict[str, bytes], fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n".encode()
        )
    for name, data in files.items():
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{name}.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


class Loopback:
    """A small aiohttp app on 127.0.0.1 in a background thread (a camera, a ZoneMinder, a
    webhook receiver): `Loopback(routes).url`, then `stop()`."""

    def __init__(self, routes: list[web.RouteDef]) -> None:
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        threading.Thread(target=self._run, args=(routes, started), daemon=True).start()
        started.wait(10)

    def _run(self, routes: list[web.RouteDef], started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.add_routes(routes)
        runner = self.runner = web.AppRunner(app, shutdown_timeout=1)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{self.port}"
        started.set()
        self.loop.run_forever()

    def stop(self) -> None:
        """Close connections (a handler still sleeping is cancelled), then the loop."""
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)


# -- raw sockets, where a client library would tidy the request -------------------------
def raw(
    server: LiveServer, request: bytes, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are; (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(request)
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not chunk:
                break
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length")]
            if length and len(body) >= int(length[0].split(b":")[1]):
                break
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(ln.split(": ", 1) for ln in lines[1:] if ": " in ln)
    return int(lines[0].split()[1]), headers, body


def post(
    server: LiveServer, path: str, body: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, Any]]:
    lines = [f"POST {path} HTTP/1.1", "Host: x", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    status, _, answer = raw(server, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    return status, json.loads(answer)
