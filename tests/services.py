"""Real services the tests start on loopback: a throwaway PostgreSQL cluster from the
machine's server binaries, and HAProxy. Missing binaries skip the tests that need them,
except where MLAPI_REQUIRE_SERVICES=1 (CI): there they fail."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

REQUIRED = os.environ.get("MLAPI_REQUIRE_SERVICES") == "1"


def missing(what: str) -> None:
    if REQUIRED:
        pytest.fail(f"{what} is needed (MLAPI_REQUIRE_SERVICES=1)")
    pytest.skip(f"{what} is not installed")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_owner(args: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as `postgres` there."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class Cluster:
    """A PostgreSQL cluster in a temporary folder, trusting loopback connections."""

    def __init__(self) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        initdb = found[-1] if found else shutil.which("initdb")
        if initdb is None:
            missing("PostgreSQL's server binaries (initdb)")
        self.bin = Path(initdb).parent  # type: ignore[arg-type]
        self.folder = Path(tempfile.mkdtemp(prefix="mlapi-pg-"))
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        subprocess.run(
            _as_owner([str(self.bin / "initdb"), "-D", str(self.folder / "data"), "-A", "trust",
                       "-U", "postgres", "-E", "UTF8", "--no-sync"]),
            check=True, capture_output=True,
        )  # fmt: skip
        self.start()

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c max_connections=200"
        )
        subprocess.run(
            _as_owner([str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-o", options,
                       "-l", str(self.folder / "log"), "-w", "start"]),
            check=True, capture_output=True,
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(
            _as_owner([str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", mode,
                       "-w", "stop"]),
            check=False, capture_output=True,
        )  # fmt: skip

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def close(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def new_database(url: str) -> str:
    """A fresh, empty database on the server at `url`; its URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # a generated name, not input
    return url.rsplit("/", 1)[0] + "/" + name


class HAProxy:
    """HAProxy on loopback in front of `backends` (ports), checking /ready."""

    def __init__(self, backends: list[int]) -> None:
        binary = shutil.which("haproxy") or (
            "/usr/sbin/haproxy" if Path("/usr/sbin/haproxy").exists() else None
        )
        if binary is None:
            missing("HAProxy")
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="mlapi-haproxy-"))
        self.config = self.folder / "haproxy.cfg"
        self.config.write_text(haproxy_config(self.port, backends))
        self.proc = subprocess.Popen(
            [str(binary), "-db", "-f", str(self.config)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("haproxy did not start")

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


def haproxy_config(port: int, backends: list[int]) -> str:
    """The configuration docs/deployment.md shows, with loopback ports."""
    servers = "\n".join(
        f"    server mlapi{i} 127.0.0.1:{p} check inter 500 fall 2 rise 2"
        for i, p in enumerate(backends, 1)
    )
    return f"""global
    maxconn 1000

defaults
    mode http
    timeout connect 2s
    timeout client 120s
    timeout server 120s
    # A replica that refuses the connection (killed, restarting) is skipped for another.
    retries 3
    option redispatch
    # The client's address for the replicas' login limiter and logs (--trusted-proxies).
    option forwardfor

frontend mlapi
    bind 127.0.0.1:{port}
    default_backend replicas

backend replicas
    balance roundrobin
    option httpchk GET /ready
{servers}
"""
