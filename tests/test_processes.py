"""`mlapi serve --processes 2`: one port, two engines, one server to every client."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import services

from mlapi.processes import STALE_SECONDS, backoff
from mlapi.processes import Group as ProcessGroup
from mlapi.store import ModelCache
from mlapi.stores.gallery import Gallery


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def children_of_port(port: int) -> list[int]:
    """Processes still running `mlapi serve --port PORT`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"serve" in argv and str(port).encode() in argv:
                found.append(int(entry.name))
    return found


class Group:
    def __init__(self, data: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.data, self.port = data, port
        self.env = dict(os.environ, MLAPI_DATA_DIR=str(data), **(env or {}))
        self.log = data / "serve.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "mlapi", "serve", "--port", str(port), "--processes", "2",
                 "--workers", "1", "--models", "objects"],
                env=self.env,
                stderr=log,
            )  # fmt: skip

    def cli(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run(
            [sys.executable, "-m", "mlapi", *args],
            input=stdin, text=True, env=self.env, capture_output=True, check=True,
        )  # fmt: skip
        return done.stdout.strip()

    def call(
        self,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60,
    ) -> tuple[int, bytes]:
        """A request on a connection of its own (the kernel picks the process)."""
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", data=body, headers=headers or {}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                return answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.call("/ready", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise AssertionError("the server did not get ready")


def finish(running: Group) -> None:
    for pid in children(running.proc.pid):  # none stays stopped (SIGSTOP) by a failed test
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGCONT)
    if running.proc.poll() is None:
        running.proc.kill()  # the children follow their parent (PR_SET_PDEATHSIG)
        running.proc.wait()
    deadline = time.monotonic() + 30
    while children_of_port(running.port) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not children_of_port(running.port), "a child outlived its parent"


@pytest.fixture
def group(store: ModelCache, tmp_path: Path) -> Iterator[Group]:
    running = Group(tmp_path, free_port())
    running.cli("adduser", "ann", "--password-stdin", stdin="ann's password\n")
    try:
        running.wait_ready()
        yield running
    finally:
        finish(running)


def login(group: Group, password: str) -> int:
    body = json.dumps({"username": "ann", "password": password}).encode()
    return group.call("/api/v1/login", body, {"Content-Type": "application/json"})[0]


def test_every_process_shares_what_the_server_knows(group: Group, photos: Path) -> None:
    assert len(children(group.proc.pid)) == 2
    # Wrong guesses answered by either process lock the account on both.
    assert [login(group, f"wrong {i}") for i in range(5)] == [401] * 5
    assert [login(group, "ann's password") for _ in range(4)] == [429] * 4
    # A key made with the CLI works at once everywhere, and once revoked fails everywhere.
    key = group.cli("keys", "create", "ann")
    photo = (photos / "object_detection_input.jpg").read_bytes()
    headers = {"X-API-Key": key, "Content-Type": "image/jpeg"}
    answers = [group.call("/api/v1/detect", photo, headers) for _ in range(8)]
    assert {status for status, _ in answers} == {200}
    assert len({body for _, body in answers}) == 1  # the same bytes from both engines
    key_id = key.split("_")[1]
    group.cli("keys", "revoke", key_id)
    assert {group.call("/api/v1/detect", photo, headers)[0] for _ in range(8)} == {401}
    # A person added to the gallery is listed by both on their next request.
    key = group.cli("keys", "create", "ann")
    Gallery(group.data / "gallery.json").add("Zoe", np.ones(128, np.float32) / 128**0.5, "dlib")
    form = {"X-API-Key": key, "Content-Type": "application/x-www-form-urlencoded"}
    for _ in range(6):
        status, body = group.call("/v1/vision/face/list", b"", form)
        assert status == 200 and json.loads(body)["faces"] == ["Zoe"]
    # One scrape is the whole server: 8 answered detections, whichever process counted them.
    time.sleep(1.5)  # each process publishes its counts every second
    for _ in range(3):
        text = group.call("/metrics", None, {"X-API-Key": key})[1].decode()
        assert 'route="/api/v1/detect",status="200"} 8' in text
        assert 'route="/api/v1/detect",status="401"} 8' in text
        assert "mlapi_processes 2" in text and "mlapi_ready 1" in text


def test_a_dead_process_is_replaced_and_sigterm_drains_them_all(group: Group, photos: Path) -> None:
    before = children(group.proc.pid)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    time.sleep(0.5)
    group.wait_ready(60)  # ready again only once the new process is warm
    after = children(group.proc.pid)
    assert len(after) == 2 and victim not in after and after & before
    # Requests in flight on both processes finish after SIGTERM; then everything exits.
    key = group.cli("keys", "create", "ann")
    body = (photos / "face_detection_input.jpg").read_bytes()
    head = (
        f"POST /api/v1/detect HTTP/1.1\r\nHost: x\r\nX-API-Key: {key}\r\n"
        f"Content-Type: image/jpeg\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    conns = [socket.create_connection(("127.0.0.1", group.port)) for _ in range(6)]
    for conn in conns:
        conn.sendall(head + body)
    time.sleep(0.1)
    group.proc.send_signal(signal.SIGTERM)
    for conn in conns:
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        conn.close()
        assert b" 200 " in answer.partition(b"\r\n")[0] and b'"label": "person"' in answer
    assert group.proc.wait(60) == 0
    assert not children(group.proc.pid)


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_busy_port_is_one_line_naming_it(
    store: ModelCache, tmp_path: Path, processes: str
) -> None:
    """A port already taken: one line naming it and the option, exit 1, no restart loop."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "mlapi", "serve", "--port", str(port), "--processes",
             processes, "--models", "objects"],
            env=dict(os.environ, MLAPI_DATA_DIR=str(tmp_path)),
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"error: 127.0.0.1:{port} is in use: choose another with --port" in done.stderr
    if processes == "2":
        assert "stopping the server" in done.stderr


def probe(group: Group, path: str, headers: dict[str, str] | None = None) -> tuple[int, float]:
    """A short request: its status (0: no answer within a second) and how long it took."""
    began = time.monotonic()
    try:
        status = group.call(path, headers=headers, timeout=1)[0]
    except OSError:
        status = 0
    return status, time.monotonic() - began


def test_a_stuck_process_is_killed_and_replaced(group: Group, photos: Path) -> None:
    """A child whose event loop stops (here: SIGSTOP) stops beating: within 5 s the parent
    kills it and starts another; meanwhile /ready and mlapi_ready say the server is not
    ready, and once the replacement is warm they say it is."""
    key = group.cli("keys", "create", "ann")
    before = children(group.proc.pid)
    victim = min(before)
    os.kill(victim, signal.SIGSTOP)
    stopped = time.monotonic()
    replaced_after = None
    ready, metrics, health = [], [], []
    try:
        while time.monotonic() - stopped < 20:
            now = children(group.proc.pid)
            if replaced_after is None and victim not in now and len(now) == 2:
                replaced_after = time.monotonic() - stopped
            ready.append((time.monotonic() - stopped, probe(group, "/ready")[0]))
            text = b""
            with contextlib.suppress(OSError):
                text = group.call("/metrics", headers={"X-API-Key": key}, timeout=1)[1]
            metrics.append(b"mlapi_ready 0" in text)
            health.append(probe(group, "/health"))
            if replaced_after is not None and ready[-1][1] == 200:
                break
    finally:
        with contextlib.suppress(OSError):
            os.kill(victim, signal.SIGCONT)
    answered = [latency for status, latency in health if status == 200]
    refused = [at for at, status in ready if status == 503]
    print(
        f"stuck child replaced {replaced_after} s after SIGSTOP; /ready 503 from "
        f"{min(refused, default=None)} s to {max(refused, default=None)} s, then "
        f"{ready[-1][1]}; /health answered {len(answered)}/{len(health)} (a connection the "
        f"kernel gave the stuck child waits), slowest answer {max(answered):.3f} s"
    )
    assert replaced_after is not None and replaced_after < 5, "the stuck child was not replaced"
    after = children(group.proc.pid)
    assert victim not in after and len(after) == 2 and after & before
    assert 503 in {status for _, status in ready}, "/ready said 200 while a child was stuck"
    assert any(metrics), "mlapi_ready stayed 1 while a child was stuck"
    assert ready[-1][1] == 200  # the replacement is warm
    group.wait_ready(10)
    scrape = group.call("/metrics", headers={"X-API-Key": key})[1].decode()
    assert "mlapi_ready 1" in scrape
    assert "has not answered for" in group.log.read_text()


def test_a_database_outage_never_stops_the_server(store: ModelCache, tmp_path: Path) -> None:
    """PostgreSQL stops and a child is killed: the child, which cannot reach the database,
    is started again and again with a growing pause (not a fatal start failure); the other
    child serves meanwhile, /ready says 503; once the database is back, so is the child.
    MLAPI_DB_PATIENCE=2 makes a child give up on the database after 2 s instead of 60."""
    cluster = services.Cluster()
    running = None
    try:
        env = {"MLAPI_DATABASE_URL": services.new_database(cluster.url()), "MLAPI_DB_PATIENCE": "2"}
        running = Group(tmp_path, free_port(), env)
        running.cli("adduser", "ann", "--password-stdin", stdin="ann's password\n")
        running.wait_ready()
        before = children(running.proc.pid)
        cluster.stop()
        victim = min(before)
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        seen = set(before)
        ready, health = [], []
        while time.monotonic() - killed < 14:
            assert running.proc.poll() is None, "the server stopped"
            seen |= children(running.proc.pid)
            if len(seen) > len(before):  # the dead child is gone: the other one answers
                ready.append(probe(running, "/ready")[0])
                health.append(probe(running, "/health"))
            time.sleep(0.2)
        log = running.log.read_text()
        restarts = len(seen - before)
        answered = [latency for status, latency in health if status == 200]
        print(
            f"during the outage: {restarts} processes started for the killed one; /health "
            f"answered {len(answered)}/{len(health)}, slowest {max(answered):.3f} s; "
            f"/ready {sorted(set(ready))}"
        )
        assert running.proc.poll() is None, "the server stopped"
        assert len(answered) == len(health), "the other child did not serve /health"
        assert set(ready) == {503}
        assert restarts >= 2, "the child that could not reach the database was not restarted"
        assert "could not reach the database; starting it again in 1 s" in log
        assert "could not reach the database; starting it again in 2 s" in log
        assert "stopping the server" not in log
        cluster.start()
        back = time.monotonic()
        running.wait_ready(45)
        print(f"ready again {time.monotonic() - back:.1f} s after the database came back")
        assert len(children(running.proc.pid)) == 2
        key = running.cli("keys", "create", "ann")
        answers = []  # a new key, read from the database by both processes
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            answers = [running.call("/api/v1/models", headers={"X-API-Key": key}) for _ in range(8)]
            if {status for status, _ in answers} == {200}:
                break
            time.sleep(0.5)
        print(f"a new key works on both {time.monotonic() - back:.1f} s after the database is back")
        assert {status for status, _ in answers} == {200}, answers
    finally:
        if running is not None:
            finish(running)
        cluster.close()


def test_a_stale_heartbeat_is_not_ready_and_the_pause_grows() -> None:
    group = ProcessGroup(2)
    try:
        for slot in (0, 1):
            group.set_ready(True, slot)
        assert group.all_ready()  # neither beats yet (loading models): not watched
        group.beat(0)
        group.beat(1, at=time.monotonic() - STALE_SECONDS - 0.5)
        assert group.stale(1) and not group.stale(0) and not group.all_ready()
        group.beat(1, at=0.0)  # stopped beating on purpose (cleanup): not stuck
        assert group.all_ready()
    finally:
        shutil.rmtree(group.folder, ignore_errors=True)
    assert [backoff(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 30, 30, 30]
