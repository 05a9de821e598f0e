"""`mlapi serve` as a real process: ready only when warmed, graceful stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from mlapi.store import ModelCache


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sigterm_lets_the_in_flight_request_finish(
    store: ModelCache, photos: Path, tmp_path: Path
) -> None:
    env = dict(os.environ, MLAPI_DATA_DIR=str(tmp_path))
    add = subprocess.run(
        [sys.executable, "-m", "mlapi", "adduser", "dave", "--password-stdin"],
        input="dave's password\n",
        text=True,
        env=env,
        capture_output=True,
    )
    assert add.returncode == 0, add.stderr
    key = subprocess.run(
        [sys.executable, "-m", "mlapi", "keys", "create", "dave"],
        text=True,
        env=env,
        capture_output=True,
    ).stdout.strip()
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlapi",
            "serve",
            "--port",
            str(port),
            "--workers",
            "1",
            "--models",
            "objects,faces,cvface",
        ],
        env=env,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                    if json.load(r)["ready"]:
                        break
            except OSError:
                time.sleep(0.2)
        # Four slow requests queue behind one worker; SIGTERM arrives while they are in flight.
        body = (photos / "face_detection_input.jpg").read_bytes()
        head = (
            f"POST /api/v1/detect?models=objects,faces,cvface HTTP/1.1\r\nHost: x\r\n"
            f"X-API-Key: {key}\r\nContent-Type: image/jpeg\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        conns = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        for conn in conns:
            conn.sendall(head + body)
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        for conn in conns:
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
            conn.close()
            status_line, _, payload = answer.partition(b"\r\n")
            assert b" 200 " in status_line, answer[:300]
            assert payload.count(b'"label": "face"') == 10  # faces and cvface: 5 each
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
