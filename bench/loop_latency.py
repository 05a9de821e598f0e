"""/health while a server re-reads a 30,000-sample gallery, and during console listings.

    .venv/bin/python bench/loop_latency.py [--store postgresql|tinydb|both] [--rounds 3]

A server process (this script with --serve) on a gallery of 30,000 samples (3,000 people,
dlib's 128-d unit vectors as stored: tests/big_gallery.py), in a throwaway PostgreSQL
cluster or a TinyDB file. The face and faceprint detectors are stand-ins (no models are
needed); recognition, the gallery and the stores are the real ones. Another process (this
one) changes the gallery (adds a sample), then sends one DeepStack recognition while
asking /health every 10 ms; then ten console listings at once (PostgreSQL). Prints, for
each, /health's slowest and median answer and how long the work took. With
PYTHONPATH=<an older checkout> the same runs against that code.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from benchmark import multipart
from big_gallery import (
    PHOTO,
    REGISTRY,
    SAMPLES,
    SOUGHT_NAME,
    VECTORS,
    fill_database,
    write_file,
)
from processes import cpu_name
from services import Cluster, free_port, new_database

from mlapi.stores import Stores, open_stores

PASSWORD = "bench password"
T = TypeVar("T")


def serve(port: int, database: str | None, data: str | None) -> None:
    """The server process: the real app on the stand-in detectors."""
    from aiohttp import web

    from mlapi.config import ServerConfig
    from mlapi.engine import Engine
    from mlapi.store import ModelCache
    from mlapi.web.app import create_app

    stores = open_stores(Path(data) if data else None, database)
    cache = Path(tempfile.mkdtemp(prefix="mlapi-bench-cache-"))
    engine = Engine(ModelCache(cache), registry=REGISTRY, gallery=stores.faces)
    app = create_app(engine, stores, ServerConfig(models=()))
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=lambda _: None)


class Server:
    def __init__(self, stores: Stores, database: str | None, data: Path | None) -> None:
        self.stores, self.data = stores, data
        self.port = free_port()
        where = ["--database", database] if database else ["--data", str(data)]
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(self.port), *where], env=dict(os.environ)
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.call("GET", "/health")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the server did not start")
        stores.accounts.add("bench", PASSWORD)
        self.key = stores.accounts.create_key("bench", "bench")

    def call(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes, http.client.HTTPResponse]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        conn.request(method, path, body, headers or {})
        answer = conn.getresponse()
        data = answer.read()
        conn.close()
        return answer.status, data, answer

    def recognise(self) -> str:
        body, content_type = multipart(PHOTO, "image")
        headers = {"Content-Type": content_type, "X-API-Key": self.key}
        status, data, _ = self.call("POST", "/v1/vision/face/recognize", body, headers)
        if status != 200:
            raise RuntimeError(f"recognition: {status} {data[:200]!r}")
        return str(json.loads(data)["predictions"][0]["userid"])

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)


def while_probing(server: Server, work: Callable[[], T]) -> tuple[T, list[float], float]:
    """(what `work()` gave; /health's answers in ms, asked every 10 ms on one kept-alive
    connection meanwhile; seconds `work()` took)."""
    stop, times = threading.Event(), []

    def probe() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        while not stop.is_set():
            started = time.perf_counter()
            conn.request("GET", "/health")
            conn.getresponse().read()
            times.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)
        conn.close()

    thread = threading.Thread(target=probe)
    thread.start()
    time.sleep(0.2)
    started = time.perf_counter()
    done = work()
    spent = time.perf_counter() - started
    time.sleep(0.05)
    stop.set()
    thread.join()
    return done, times, spent


def line(what: str, times: list[float], spent: float) -> str:
    return (
        f"  {what}: {spent:.2f} s; /health max {max(times):.1f} ms, "
        f"median {statistics.median(times):.1f} ms ({len(times)} probes)"
    )


def recognitions(server: Server, kind: str, rounds: int) -> None:
    assert server.recognise() == SOUGHT_NAME  # warm: detectors loaded, gallery read
    _, times, spent = while_probing(server, lambda: time.sleep(1))
    print(line("nothing else (the floor on this machine)", times, spent), flush=True)
    for n in range(rounds):
        writer = open_stores(server.data) if server.data else server.stores
        writer.faces.add(f"newcomer {n}", VECTORS[n], "dlib")  # as the CLI would
        name, times, spent = while_probing(server, server.recognise)
        assert name == SOUGHT_NAME, name
        print(line(f"first recognition after a change ({kind})", times, spent), flush=True)


def listings(server: Server, query: str) -> None:
    body = json.dumps({"username": "bench", "password": PASSWORD}).encode()
    _, _, answer = server.call(
        "POST", "/console/api/signin", body, {"Content-Type": "application/json"}
    )
    cookie = str(answer.getheader("Set-Cookie")).split(";")[0]
    sizes: list[int] = []

    def one() -> None:
        status, data, _ = server.call(
            "GET", f"/console/api/people{query}", None, {"Cookie": cookie}
        )
        assert status == 200, status
        sizes.append(len(data))

    def ten() -> None:
        threads = [threading.Thread(target=one) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    one()  # the store's first read is not what is measured
    _, times, spent = while_probing(server, ten)
    what = f"ten parallel GET /console/api/people{query} ({sizes[-1] / 1e6:.2f} MB each)"
    print(line(what, times, spent), flush=True)


def run(kind: str, rounds: int) -> None:
    print(f"{kind}, {SAMPLES} samples:", flush=True)
    folder = Path(tempfile.mkdtemp(prefix="mlapi-bench-loop-"))
    cluster = Cluster() if kind == "postgresql" else None
    try:
        if cluster:
            database: str | None = new_database(cluster.url())
            stores = open_stores(database=database)
            fill_database(str(database))
            data = None
        else:
            database, data = None, folder / "data"
            write_file(data)
            stores = open_stores(data)
        server = Server(stores, database, data)
        try:
            recognitions(server, kind, rounds)
            if kind == "postgresql":
                listings(server, "")
                listings(server, "?limit=1000")
        finally:
            server.close()
            stores.close()
    finally:
        if cluster:
            cluster.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", choices=("postgresql", "tinydb", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.database, args.data)
        return
    import mlapi

    print(f"{cpu_name()}, {os.cpu_count()} cores; mlapi from {Path(mlapi.__file__).parent}")
    for kind in ("postgresql", "tinydb") if args.store == "both" else (args.store,):
        run(kind, args.rounds)


if __name__ == "__main__":
    main()
