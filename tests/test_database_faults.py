"""A slow database is a fast 503, and the pool heals: a real server on loopback over a real
PostgreSQL that holds a lock, is stopped with SIGSTOP, or restarts."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import services
from servers import Answer, LiveServer

from mlapi.config import ServerConfig, StoreSettings
from mlapi.engine import Engine
from mlapi.store import ModelCache
from mlapi.stores import open_stores

PASSWORD = "a long enough password"
TIMEOUT = 1.0  # --db-timeout of these servers
PROMISED = TIMEOUT + 0.5  # every answer comes within this, 503 or not


@dataclass
class Served:
    server: LiveServer
    known: str  # an API key the server has used
    fresh: list[str]  # keys it has never seen

    def keyed(self, key: str) -> tuple[Answer, float]:
        return timed(lambda: self.server.call("GET", "/api/v1/models", None, {"X-API-Key": key}))

    def login(self) -> tuple[Answer, float]:
        return timed(lambda: self.server.login("ann", PASSWORD))

    def health(self) -> tuple[Answer, float]:
        return timed(lambda: self.server.call("GET", "/health"))


def timed(call: Callable[[], Answer]) -> tuple[Answer, float]:
    started = time.monotonic()
    answer = call()
    return answer, time.monotonic() - started


def unavailable(answer: Answer) -> bool:
    """The database's 503, with when to retry."""
    return answer.status == 503 and answer.headers.get("Retry-After") == "1"


@contextlib.contextmanager
def serving(database: str, tmp_path: Path) -> Iterator[Served]:
    """A server with --db-timeout 1 over `database`, a user, a key it has just used and
    three it has never seen."""
    stores = open_stores(database=database, settings=StoreSettings(db_timeout=TIMEOUT))
    engine = Engine(ModelCache(tmp_path / "cache"))
    server = LiveServer(engine, tmp_path / "data", ServerConfig(models=()), stores)
    try:
        stores.accounts.add("ann", PASSWORD)
        known = stores.accounts.create_key("ann", "camera")
        fresh = [stores.accounts.create_key("ann", f"unused {i}") for i in range(3)]
        served = Served(server, known, fresh)
        assert served.keyed(known)[0].status == 200 and served.login()[0].status == 200
        time.sleep(1.1)  # the known key is due to be read again: from here on, the cache
        yield served  # answers for it only because the database does not
    finally:
        server.stop()
        engine.close()
        stores.close()


@pytest.fixture
def cluster() -> Iterator[services.Cluster]:
    """A PostgreSQL of this test's own, to stop and restart."""
    started = services.Cluster()
    try:
        yield started
    finally:
        started.close()


def test_a_held_lock_is_a_fast_503_and_known_keys_still_work(database: str, tmp_path: Path) -> None:
    with serving(database, tmp_path) as served:
        locker = psycopg.connect(database, autocommit=True)
        try:
            locker.execute("BEGIN")
            locker.execute("LOCK TABLE mlapi_keys, mlapi_users IN ACCESS EXCLUSIVE MODE")
            fresh, took = served.keyed(served.fresh[0])
            assert unavailable(fresh) and took < PROMISED, (fresh.status, took)
            assert fresh.json()["msg"] == "the database does not answer; retry shortly"
            login, took = served.login()
            assert unavailable(login) and took < PROMISED, (login.status, took)
            known, took = served.keyed(served.known)  # read in the last 60 s: trusted
            assert known.status == 200 and took < PROMISED, (known.status, took)
            assert served.health()[1] < 0.5
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        # The lock gone, everything answers at once.
        assert served.keyed(served.fresh[0])[0].status == 200
        assert served.login()[0].status == 200


def processes(cluster: services.Cluster) -> list[int]:
    """The postmaster, then its children (backends, checkpointer, …)."""
    main = int((cluster.folder / "data" / "postmaster.pid").read_text().split()[0])
    found = subprocess.run(["pgrep", "-P", str(main)], capture_output=True, text=True)
    return [main, *map(int, found.stdout.split())]


def test_a_stopped_database_is_a_fast_503_and_known_keys_still_work(
    cluster: services.Cluster, tmp_path: Path
) -> None:
    with serving(cluster.url(), tmp_path) as served:
        stopped = processes(cluster)
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        try:
            known, took = served.keyed(served.known)  # read in the last 60 s: trusted
            assert known.status == 200 and took < PROMISED, (known.status, took)
            fresh, took = served.keyed(served.fresh[0])
            assert unavailable(fresh) and took < PROMISED, (fresh.status, took)
            login, took = served.login()
            assert unavailable(login) and took < PROMISED, (login.status, took)
            # Known to be stalled, the database is not waited for again and again.
            for _ in range(3):
                known, took = served.keyed(served.known)
                assert known.status == 200 and took < 0.5, (known.status, took)
                fresh, took = served.keyed(served.fresh[1])
                assert unavailable(fresh) and took < 0.5, (fresh.status, took)
            assert served.health()[1] < 0.5
        finally:
            for pid in stopped:
                os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 3  # the probe notices within moments
        while served.login()[0].status != 200:
            assert time.monotonic() < deadline, "not back 3 s after SIGCONT"
            time.sleep(0.05)
        assert served.keyed(served.fresh[2])[0].status == 200


def test_after_a_restart_the_next_request_succeeds(
    cluster: services.Cluster, tmp_path: Path
) -> None:
    with serving(cluster.url(), tmp_path) as served:
        for round_ in range(2):
            cluster.stop()  # every pooled connection dies with it
            login, took = served.login()  # down: refused at once, not waited for
            assert unavailable(login) and took < PROMISED, (login.status, took)
            cluster.start()
            login, _ = served.login()
            assert login.status == 200, (round_, login.status, login.body)
            fresh, _ = served.keyed(served.fresh[round_])
            assert fresh.status == 200, (round_, fresh.status, fresh.body)
