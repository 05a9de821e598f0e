"""What odd Host headers and pixel-heavy small images cost a running server (not a test):
prints issue 31's figures for items 9 and 10.

    .venv/bin/python bench/edge.py [--tree CHECKOUT] [--seconds 15]

`--tree`: another checkout of mlapi to serve (an older commit, for before-and-after in one
run on one machine); default: this one. Starts its `mlapi serve` (objects only) on a
loopback port with a throw-away data dir, then:

- hosts: every route of the OpenAPI document and the console, with a key and each odd
  `Host`; how many answers had each status;
- pixels: camera tiles (416×416 JPEG, 4 clients) through /api/v1/detect alone, then beside
  two clients sending a 16-megapixel PNG of a few dozen KB to /console/api/preview: the
  tiles' p50 and p95, and /health's p50 and worst meanwhile.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.cookies import SimpleCookie
from pathlib import Path

import cv2
import numpy as np

from mlapi import samples
from mlapi.images import decode, encode_jpeg
from mlapi.stores.users import UserStore

ODD_HOSTS = ("x:abc", "127.0.0.1:99999", "[::1")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def raw(port: int, method: str, path: str, host: str, key: str) -> int:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(
            f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {key}\r\n"
            "Content-Type: application/json\r\nContent-Length: 2\r\n"
            "Connection: close\r\n\r\n{}".encode()
        )
        first = sock.recv(64)
    return int(first.split()[1]) if first else 0


def call(
    port: int, method: str, path: str, body: bytes | None, headers: dict[str, str]
) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, method=method, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as answer:
            return answer.status, answer.read(), dict(answer.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def hosts(port: int, key: str) -> None:
    _, body, _ = call(port, "GET", "/api/v1/openapi.json", None, {})
    routes = [
        (method.upper(), path.replace("{", "").replace("}", ""))
        for path, item in json.loads(body)["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete")
    ]
    for host in ODD_HOSTS:
        counts = Counter(raw(port, m, p, host, key) for m, p in routes)
        shown = ", ".join(f"{s}: {n}" for s, n in sorted(counts.items()))
        print(f"Host: {host!r:20} {len(routes)} routes -> {shown}")


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def pixels(port: int, key: str, seconds: float) -> None:
    photos = samples.fetch()
    tile = encode_jpeg(
        np.ascontiguousarray(
            decode((photos / "object_detection_input.jpg").read_bytes()).pixels[:416, :416]
        )
    )
    big = cv2.imencode(".png", np.zeros((4000, 4000, 3), np.uint8))[1].tobytes()
    body = json.dumps({"username": "bench", "password": "bench password 1"}).encode()
    _, answer, headers = call(
        port, "POST", "/console/api/signin", body, {"Content-Type": "application/json"}
    )
    cookie = SimpleCookie(headers["Set-Cookie"])["mlapi_session"].value
    csrf = json.loads(answer)["csrf"]

    def round_(with_big: bool) -> None:
        stop = threading.Event()
        tiles: list[float] = []
        health: list[float] = []
        previews = Counter[int]()

        def camera() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                status, _, _ = call(port, "POST", "/api/v1/detect?models=objects", tile,
                                    {"X-API-Key": key, "Content-Type": "image/jpeg"})  # fmt: skip
                if status == 200:
                    tiles.append((time.perf_counter() - started) * 1000)

        def previewer() -> None:
            while not stop.is_set():
                status, _, _ = call(port, "POST", "/console/api/preview", big, {
                    "Cookie": f"mlapi_session={cookie}", "X-CSRF-Token": csrf,
                    "Content-Type": "image/png"})  # fmt: skip
                previews[status] += 1

        def probe() -> None:
            while not stop.is_set():
                started = time.perf_counter()
                call(port, "GET", "/health", None, {})
                health.append((time.perf_counter() - started) * 1000)
                time.sleep(0.01)

        workers = [threading.Thread(target=camera) for _ in range(4)] + [
            threading.Thread(target=probe)
        ]
        if with_big:
            workers += [threading.Thread(target=previewer) for _ in range(2)]
        for w in workers:
            w.start()
        time.sleep(seconds)
        stop.set()
        for w in workers:
            w.join()
        label = "tiles beside 16-MP PNG previews" if with_big else "tiles alone"
        print(
            f"{label:32} tiles: {len(tiles)} p50 {percentile(tiles, 50):.0f} ms "
            f"p95 {percentile(tiles, 95):.0f} ms; previews {dict(previews)}; "
            f"/health p50 {statistics.median(health):.1f} ms, worst {max(health):.1f} ms"
        )

    round_(False)
    round_(True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parent.parent)
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        users = UserStore(Path(tmp) / "users.json")
        users.add("bench", "bench password 1")
        key = users.create_key("bench", "bench")
        env = {**os.environ, "MLAPI_DATA_DIR": tmp, "PYTHONPATH": str(args.tree.resolve())}
        log = open(Path(tmp) / "server.log", "w")  # noqa: SIM115 (open while it serves)
        server = subprocess.Popen(
            [sys.executable, "-m", "mlapi", "serve", "--port", str(port), "--models", "objects"],
            env=env, stdout=log, stderr=log, cwd=tmp,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while call(port, "GET", "/ready", None, {})[0] != 200 if _up(port) else True:
                if time.monotonic() > deadline or server.poll() is not None:
                    log_text = (Path(tmp) / "server.log").read_text()
                    sys.exit(f"the server did not start: {log_text[-2000:]}")
                time.sleep(0.3)
            cpu = next((line.split(":", 1)[1].strip() for line in
                        Path("/proc/cpuinfo").read_text().splitlines()
                        if line.startswith("model name")), "?")  # fmt: skip
            print(f"tree: {args.tree} ({os.cpu_count()} cores, {cpu})")
            hosts(port, key)
            pixels(port, key, args.seconds)
        finally:
            server.terminate()
            server.wait(60)
            log.close()


def _up(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


if __name__ == "__main__":
    main()
