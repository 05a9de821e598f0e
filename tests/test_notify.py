"""`mlapi serve` under systemd (Type=notify): it tells a socket of the test's own READY=1 once
warm, WATCHDOG=1 every WATCHDOG_USEC / 2, and STOPPING=1 on SIGTERM before it drains; with
--processes only the parent speaks. And deploy/mlapi.service passes `systemd-analyze verify`."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import services

from mlapi import notify

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "deploy" / "mlapi.service"


def listen(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(0.5)
    return sock


def messages(sock: socket.socket, until: str, seconds: float = 60) -> list[str]:
    """What arrives on `sock`, up to the first message `until` (fails after `seconds`)."""
    seen: list[str] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data, _ = sock.recvfrom(4096)
        except TimeoutError:
            continue
        seen.append(data.decode())
        if data.decode() == until:
            return seen
    raise AssertionError(f"no {until} in {seen}")


def serve(tmp_path: Path, notify_socket: str, *args: str) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        MLAPI_DATA_DIR=str(tmp_path / "data"),
        NOTIFY_SOCKET=notify_socket,
        WATCHDOG_USEC="200000",  # a ping every 0.1 s
    )
    env.pop("WATCHDOG_PID", None)
    port = services.free_port()  # --models ",": no models (an empty value means the default)
    return subprocess.Popen(
        [sys.executable, "-m", "mlapi", "serve", "--port", str(port), "--models", ",", *args],
        env=env,
        stderr=subprocess.DEVNULL,
    )


def run_through(proc: subprocess.Popen[bytes], sock: socket.socket) -> list[str]:
    try:
        before = messages(sock, "READY=1")
        after = messages(sock, "WATCHDOG=1", 10)  # pings go on once ready
        proc.send_signal(signal.SIGTERM)
        stop = messages(sock, "STOPPING=1", 30)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return before + after + stop


@pytest.mark.parametrize("processes", ["1", "2"])
def test_serve_tells_systemd_ready_watchdog_and_stopping(tmp_path: Path, processes: str) -> None:
    path = tmp_path / "notify"
    with listen(str(path)) as sock:
        seen = run_through(serve(tmp_path, str(path), "--processes", processes), sock)
    assert seen.count("READY=1") == 1  # once, from one process: with 2, the parent
    assert seen.count("STOPPING=1") == 1
    assert seen.index("READY=1") < seen.index("STOPPING=1")
    assert "WATCHDOG=1" in seen[seen.index("READY=1") :]
    assert set(seen) == {"READY=1", "WATCHDOG=1", "STOPPING=1"}


def test_abstract_socket_names(tmp_path: Path) -> None:
    name = f"@mlapi-test-{os.getpid()}-{time.monotonic_ns()}"
    with listen(b"\0" + name[1:].encode()) as sock:
        seen = run_through(serve(tmp_path, name), sock)
    assert "READY=1" in seen


def test_no_socket_no_noise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify.notify("READY=1") is False
    assert notify.watchdog_interval() is None
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/socket")
    assert notify.notify("READY=1") is False  # never raises
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    assert notify.watchdog_interval() == 1.5
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))  # meant for another process
    assert notify.watchdog_interval() is None


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        services.missing("systemd-analyze (Debian's systemd package)")
        return
    # verify checks that ExecStart's binary exists; the unit names where the docs install it
    # (/opt/mlapi/mlapi), which a test machine has not, so the copy verified runs a binary
    # every machine has: every other line is verified as shipped.
    text = UNIT.read_text()
    assert "ExecStart=/opt/mlapi/mlapi serve" in text
    copy = tmp_path / "mlapi.service"
    copy.write_text(text.replace("ExecStart=/opt/mlapi/mlapi", f"ExecStart={sys.executable}"))
    result = subprocess.run(
        [analyze, "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "mlapi.service" in line  # not the machine's own units
    ]
    assert result.returncode == 0 and not problems, result.stdout + result.stderr


def test_unit_runs_the_server_the_way_the_docs_say() -> None:
    lines = set(UNIT.read_text().splitlines())
    for line in (
        "Type=notify",
        "WatchdogSec=30",
        "DynamicUser=yes",
        "StateDirectory=mlapi",
        "CacheDirectory=mlapi",
        "ConfigurationDirectory=mlapi",
        "Environment=MLAPI_DATA_DIR=%S/mlapi",  # %S: /var/lib, %C: /var/cache, %E: /etc
        "Environment=MLAPI_CACHE_DIR=%C/mlapi",
        "Environment=MLAPI_CONFIG_DIR=%E/mlapi",
        "EnvironmentFile=-/etc/mlapi/mlapi.env",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    ):
        assert line in lines, line
    assert not any(line.startswith("MemoryDenyWriteExecute") for line in lines)
