"""Two replicas on one PostgreSQL behind a real HAProxy act as one server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import services

from mlapi.store import ModelCache

PASSWORD = "replica password"
MODELS = "objects,faces,faceprint"


class Replica:
    def __init__(self, database: str, data: Path) -> None:
        self.port = services.free_port()
        env = dict(os.environ, MLAPI_DATA_DIR=str(data))  # no files shared between them
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlapi", "serve", "--port", str(self.port), "--workers", "1",
             "--database", database, "--models", MODELS],
            env=env, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if requests.get(self.url + "/ready", timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"replica on {self.port} did not get ready")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(60)


class Cluster:
    def __init__(self, database: str, root: Path) -> None:
        self.database = database
        self.a = Replica(database, root / "a")
        self.b = Replica(database, root / "b")
        self.a.wait_ready()
        self.b.wait_ready()
        self.balancer = services.HAProxy([self.a.port, self.b.port])
        self.url = f"http://127.0.0.1:{self.balancer.port}"

    def cli(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [sys.executable, "-m", "mlapi", *args, "--database", self.database],
            input=stdin, text=True, capture_output=True, check=True,
        )  # fmt: skip
        return done.stdout.strip()


@pytest.fixture
def cluster(store: ModelCache, database: str, tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(database, tmp_path)
    try:
        yield running
    finally:
        running.balancer.close()
        running.a.stop()
        running.b.stop()


def detect(url: str, key: str, photo: bytes) -> requests.Response:
    headers = {"X-API-Key": key, "Content-Type": "image/jpeg"}
    return requests.post(url + "/api/v1/detect", data=photo, headers=headers, timeout=60)


def deepstack(url: str, route: str, key: str, photo: bytes | None = None, **fields: str) -> Any:
    files = {"image": ("x.jpg", photo, "image/jpeg")} if photo else None
    answer = requests.post(
        f"{url}/v1/vision/face/{route}", data={"api_key": key, **fields}, files=files, timeout=60
    )
    return answer.status_code, answer.json()


def login(url: str, password: str) -> int:
    body = {"username": "ann", "password": password}
    return requests.post(url + "/api/v1/login", json=body, timeout=60).status_code


def test_two_replicas_act_as_one_server(cluster: Cluster, photos: Path) -> None:
    replicas = [cluster.a.url, cluster.b.url]
    cluster.cli("adduser", "ann", "--password-stdin", stdin=PASSWORD + "\n")
    # A key made with the CLI works on every replica at once, and through the balancer.
    key = cluster.cli("keys", "create", "ann")
    photo = (photos / "object_detection_input.jpg").read_bytes()
    answers = [detect(url, key, photo) for url in [*replicas, cluster.url, cluster.url]]
    assert [a.status_code for a in answers] == [200] * 4
    assert len({a.content for a in answers}) == 1  # the same bytes from every replica
    # A face registered through A is recognised by B on the next request.
    couple = (photos / "gender_detection_input.jpg").read_bytes()
    assert deepstack(cluster.a.url, "register", key, couple, userid="Alex")[0] == 200
    status, answer = deepstack(cluster.b.url, "recognize", key, couple)
    assert status == 200 and "Alex" in {p["userid"] for p in answer["predictions"]}
    assert deepstack(cluster.url, "list", key)[1]["faces"] == ["Alex"]
    # A revoked key is refused everywhere within a second.
    cluster.cli("keys", "revoke", key.split("_")[1])
    time.sleep(1.1)
    refused = [detect(url, key, photo).status_code for url in [*replicas, cluster.url]]
    assert refused == [401, 401, 401]
    # Wrong guesses spread over the replicas lock the account as on one server.
    guesses = [login(replicas[i % 2], f"wrong {i}") for i in range(5)]
    assert guesses == [401] * 5
    assert login(cluster.a.url, PASSWORD) == 429 and login(cluster.b.url, PASSWORD) == 429


def test_a_replica_killed_under_load_loses_no_acknowledged_write(
    cluster: Cluster, photos: Path
) -> None:
    cluster.cli("adduser", "ann", "--password-stdin", stdin=PASSWORD + "\n")
    key = cluster.cli("keys", "create", "ann")
    photo = (photos / "object_detection_input.jpg").read_bytes()
    couple = (photos / "gender_detection_input.jpg").read_bytes()
    stop = threading.Event()
    registered: list[str] = []
    failures: list[int] = []
    after_kill: list[int] = []
    killed = threading.Event()

    def register(worker: int) -> None:
        n = 0
        while not stop.is_set():
            name = f"p{worker}-{n}"
            try:
                status, _ = deepstack(cluster.url, "register", key, couple, userid=name)
            except (requests.ConnectionError, json.JSONDecodeError):
                status = 0
            if status == 200:
                registered.append(name)  # acknowledged: must be in the database
            else:
                failures.append(status)
            n += 1

    def load() -> None:
        while not stop.is_set():
            settled = killed.is_set()  # the balancer has had time to notice
            status = detect(cluster.url, key, photo).status_code
            if settled:
                after_kill.append(status)
            elif status != 200:
                failures.append(status)

    threads = [threading.Thread(target=register, args=(i,)) for i in range(2)]
    threads.append(threading.Thread(target=load))
    for t in threads:
        t.start()
    time.sleep(4)
    cluster.b.proc.kill()  # SIGKILL, mid-request
    time.sleep(2)
    killed.set()
    time.sleep(6)
    stop.set()
    for t in threads:
        t.join(120)
    print(f"{len(registered)} registered, failed: {failures}, {len(after_kill)} after")
    # After the balancer noticed, every request went to the surviving replica and worked.
    assert after_kill and set(after_kill) == {200}, after_kill
    # Every registration that was answered 200 is in the database, read through A.
    status, answer = deepstack(cluster.a.url, "list", key)
    assert status == 200 and len(registered) >= 4
    assert set(registered) <= set(answer["faces"]), set(registered) - set(answer["faces"])
    assert len(failures) <= 6, failures  # only requests in flight on B when it died
