"""What hostile clients cost a running server (not a test): prints the issue's figures.

    .venv/bin/python bench/hostile.py

Starts `mlapi serve` on a loopback port with a throw-away data dir, then measures: how fast
a 503 is decided once the pool is full (from the headers, before the body), /health
latency during a burst of 50 uploads and during a 40,000-part body, the peak RSS each
hostile image adds, and the RSS after the whole corpus against the baseline.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from mlapi import samples
from mlapi.images import encode_jpeg
from mlapi.users import UserStore

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from servers import multipart


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def reset_peak(pid: int) -> None:
    with contextlib.suppress(OSError):  # resets VmHWM (needs permission)
        Path(f"/proc/{pid}/clear_refs").write_text("5")


def request(port: int, raw: bytes, timeout: float = 120) -> tuple[int, float]:
    """Send raw bytes; (status, seconds until the status line arrived)."""
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(raw)
        first = sock.recv(64)
    took = time.perf_counter() - started
    return int(first.split()[1]) if first else 0, took


def post(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: x",
        "Connection: close",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def health_latencies(port: int, stop: threading.Event) -> list[float]:
    times = []
    while not stop.is_set():
        started = time.perf_counter()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as r:
            r.read()
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.01)
    return times


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99)) if values else float("nan")


def during(port: int, work) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """(/health p50, p99 in ms, samples) while `work()` runs."""
    stop = threading.Event()
    result: list[list[float]] = []
    probe = threading.Thread(target=lambda: result.append(health_latencies(port, stop)))
    probe.start()
    work()
    stop.set()
    probe.join()
    return statistics.median(result[0]), p99(result[0]), len(result[0])


def hostile_images() -> dict[str, bytes]:
    webp = io.BytesIO()
    PILImage.new("RGB", (3400, 3400)).save(webp, format="WEBP", quality=1)  # under the cap
    big_jpeg = encode_jpeg(np.zeros((7000, 7000, 3), np.uint8), quality=5)
    png = io.BytesIO()
    PILImage.new("RGB", (4000, 4000)).save(png, format="PNG")
    base = encode_jpeg(np.zeros((8, 8, 3), np.uint8))
    scans = base[:-2] + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" * 400 + b"\xff\xd9"
    return {
        "WebP 3400×3400": webp.getvalue(),
        "JPEG 7000×7000": big_jpeg,
        "PNG 4000×4000": png.getvalue(),
        "JPEG with 400 scans": scans,
        "not an image": b"GIF89a",
    }


def main() -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        users = UserStore(Path(tmp) / "users.json")
        users.add("bench", "bench password 1")
        key = users.create_key("bench", "bench")
        env = dict(os.environ, MLAPI_DATA_DIR=tmp)
        server = subprocess.Popen(
            [sys.executable, "-m", "mlapi", "serve", "--port", str(port), "--models",
             "objects,faces,genderage,faceprint", "--max-queue", "4", "--max-waiting", "0"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                        if r.status == 200:
                            break
                except OSError:
                    time.sleep(0.2)
            run(port, key, server.pid)
        finally:
            server.terminate()
            server.wait(30)


FACES = "/api/v1/detect?models=faces,genderage,faceprint"


def in_threads(count: int, fn) -> list:  # type: ignore[no-untyped-def,type-arg]
    results: list = []  # type: ignore[type-arg]
    threads = [threading.Thread(target=lambda: results.append(fn())) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def run(port: int, key: str, pid: int) -> None:
    photo = (samples.fetch() / "face_detection_input.jpg").read_bytes()
    hd = encode_jpeg(np.asarray(PILImage.open(io.BytesIO(photo)).convert("RGB")), quality=90)
    auth = {"X-API-Key": key, "Content-Type": "image/jpeg"}
    upload = post(FACES, hd, auth)
    for path in (FACES, "/api/v1/detect"):  # steady state: each route served once
        request(port, post(path, hd, auth))
    baseline = rss_mib(pid)
    print(f"server RSS after one ordinary request per route: {baseline:.0f} MiB")

    codes: list[int] = []
    p50, p99_, n = during(
        port, lambda: codes.extend(in_threads(50, lambda: request(port, upload)[0]))
    )
    print(f"/health during 50 concurrent 1080p uploads: p50 {p50:.1f} ms, p99 {p99_:.1f} ms "
          f"({n} probes); answers {sorted(set(codes))}")  # fmt: skip

    # 503 decided from the headers: fill the pool, then time a big upload's refusal.
    filling = threading.Thread(target=in_threads, args=(8, lambda: request(port, upload)))
    filling.start()
    time.sleep(0.3)
    head = post("/api/v1/detect", b"", auth).replace(
        b"Content-Length: 0", f"Content-Length: {15 << 20}".encode()
    )
    status, took = request(port, head)
    print(f"503 decided {took * 1000:.2f} ms after the headers (status {status})")
    filling.join()

    body, content_type = multipart({}, {f"f{i}": "x" for i in range(40_000)})
    parts = post("/v1/vision/detection", body, {"Content-Type": content_type})
    answers: list[int] = []
    p50, p99_, n = during(port, lambda: answers.append(request(port, parts)[0]))
    print(f"/health during a 40,000-part body: p50 {p50:.1f} ms, p99 {p99_:.1f} ms; {answers}")

    for name, data in hostile_images().items():
        reset_peak(pid)
        before = rss_mib(pid)
        for path in (FACES, "/api/v1/detect"):
            status, took = request(port, post(path, data, auth))
        peak = rss_mib(pid, "VmHWM")
        print(
            f"{name:20s} status {status}  {took * 1000:7.1f} ms  peak RSS +{peak - before:.0f} MiB"
        )
    time.sleep(1)
    print(f"RSS after the corpus: {rss_mib(pid):.0f} MiB (baseline {baseline:.0f} MiB)")


if __name__ == "__main__":
    main()
