"""What zm_detect event requests at a ZoneMinder portal that answers 404 cost a running
server (not a test): prints the issue's figures.

    .venv/bin/python bench/zm_events.py [--events 18] [--users 9] [--timeout 30]

Starts a server in this process (default capacity: 2 workers + 16 queued) and a portal
stand-in on loopback whose login works and whose every frame is 404, then sends `--events`
event requests at once (10 frames, max_attempts 3, sleep_between_attempts 5, delay 5:
105 s of waiting each, uncapped), spread over `--users` users (the per-user cap is 2).
One second in, a plain detection request; /health every 0.5 s throughout. Prints each
kind's status and time, and /health's latency.
"""

from __future__ import annotations

import argparse
import ipaddress
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from aiohttp import web

from mlapi import samples
from mlapi.config import ServerConfig
from mlapi.dialects.mlapi_seed.settings import ZoneMinderSettings
from mlapi.engine import Engine
from mlapi.store import ModelCache

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from servers import LiveServer, Loopback

OPTIONS: dict[str, Any] = {"frame_set": ",".join(str(n) for n in range(1, 11)), "max_attempts": 3,
           "sleep_between_attempts": 5, "delay": 5}  # fmt: skip


def portal() -> Loopback:
    async def login(request: web.Request) -> web.Response:
        return web.json_response({"access_token": "t", "access_token_expires": 3600})

    async def image(request: web.Request) -> web.Response:
        return web.Response(status=404, text="no such frame")

    return Loopback([web.post("/zm/api/host/login.json", login), web.get("/zm/index.php", image)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=18)
    parser.add_argument("--users", type=int, default=9)
    parser.add_argument("--timeout", type=float, default=30.0, help="--zm-event-timeout")
    args = parser.parse_args()
    store = ModelCache()
    photo = (samples.fetch(store) / "object_detection_input.jpg").read_bytes()
    zm = portal()
    zoneminder = ZoneMinderSettings(
        portal=f"{zm.url}/zm", user="admin", password="x", event_timeout=args.timeout
    )
    config = ServerConfig(
        models=("objects",), url_networks=(ipaddress.ip_network("127.0.0.0/8"),),
        dialects={"mlapi": zoneminder},
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as data, Engine(store) as engine:
        server = LiveServer(engine, Path(data), config)
        tokens = []
        for n in range(args.users):
            server.users.add(f"user{n}", "password of the bench")
            tokens.append(server.token(f"user{n}", "password of the bench"))
        url = f"{server.url}/api/v1/detect/object"

        def plain() -> tuple[int, float]:
            started = time.monotonic()
            answer = requests.post(
                url, files={"file": ("a.jpg", photo)}, timeout=300,
                headers={"Authorization": f"Bearer {tokens[0]}"},
            )  # fmt: skip
            return answer.status_code, time.monotonic() - started

        def event(token: str) -> tuple[int, float]:
            started = time.monotonic()
            answer = requests.post(
                url, json={"stream": "1234", "stream_options": OPTIONS}, timeout=300,
                headers={"Authorization": f"Bearer {token}"},
            )  # fmt: skip
            return answer.status_code, time.monotonic() - started

        print("warm-up detection:", plain())
        health: list[float] = []
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                started = time.monotonic()
                requests.get(f"{server.url}/health", timeout=60)
                health.append(time.monotonic() - started)
                done.wait(0.5)

        with ThreadPoolExecutor(args.events + 2) as pool:
            poller = pool.submit(poll)
            events = [pool.submit(event, tokens[i % args.users]) for i in range(args.events)]
            time.sleep(1)
            status, seconds = pool.submit(plain).result()
            print(f"plain detection 1 s in: HTTP {status} after {seconds:.2f} s")
            answers = [f.result() for f in events]
            done.set()
            poller.result()
        statuses = Counter(s for s, _ in answers)
        times = [t for _, t in answers]
        spread = f"{min(times):.1f}-{max(times):.1f} s"
        print(f"{args.events} event requests: {dict(statuses)}, {spread}")
        print(
            f"/health during them: {len(health)} polls, median "
            f"{statistics.median(health) * 1000:.1f} ms, max {max(health) * 1000:.1f} ms"
        )
        server.stop()
    zm.stop()


if __name__ == "__main__":
    main()
