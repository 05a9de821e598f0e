"""What hostile clients cost a running server (not a test): prints the issue's figures.

    .venv/bin/python bench/hostile.py [--case NAME]…

With no --case, every case runs. Cases: classic (pool, bursts, the image corpus), blocks
(GIFs, JPEGs and PNGs made of millions of empty blocks), progressive (a 7000×7000
progressive JPEG), json (big unauthenticated JSON), slots (slow and vanishing keyless
bodies, then the admission gauge), gallery (a 30,000-sample gallery: deletes and
listings), names (inputs that once gave 500s: each status).

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
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

from mlapi import samples
from mlapi.images import encode_jpeg
from mlapi.stores.users import UserStore

sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from floods import gif_comments, jpeg_comments, png_chunks
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
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=900) as r:
            r.read()
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.01)
    return times


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99)) if values else float("nan")


def during(port: int, work) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """(/health p50, worst in ms, samples) while `work()` runs."""
    stop = threading.Event()
    result: list[list[float]] = []
    probe = threading.Thread(target=lambda: result.append(health_latencies(port, stop)))
    probe.start()
    work()
    stop.set()
    probe.join()
    return statistics.median(result[0]), max(result[0]), len(result[0])


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
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--case", action="append", choices=sorted(CASES))
    chosen = parser.parse_args().case or list(CASES)
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp, open(Path(tmp) / "server.log", "w") as errors:
        if "gallery" in chosen:
            big_gallery(Path(tmp) / "gallery.json", 30_000)
        users = UserStore(Path(tmp) / "users.json")
        users.add("bench", "bench password 1")
        key = users.create_key("bench", "bench")
        env = dict(os.environ, MLAPI_DATA_DIR=tmp)
        server = subprocess.Popen(
            [sys.executable, "-m", "mlapi", "serve", "--port", str(port), "--models",
             "objects,faces,genderage,faceprint", "--max-queue", "4", "--max-waiting", "0",
             "--allow-url-fetch", "--allow-url-networks", "127.0.0.0/8"],
            env=env, stdout=subprocess.DEVNULL, stderr=errors,
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
            for case in chosen:
                print(f"-- {case}")
                CASES[case](port, key, server.pid)
        finally:
            server.terminate()
            server.wait(30)
            log = (Path(tmp) / "server.log").read_text()
            print(f"server log: {log.count('Traceback')} tracebacks, "
                  f"{log.count(' 500 ')} answers of 500")  # fmt: skip


FACES = "/api/v1/detect?models=faces,genderage,faceprint"


def in_threads(count: int, fn) -> list:  # type: ignore[no-untyped-def,type-arg]
    results: list = []  # type: ignore[type-arg]
    threads = [threading.Thread(target=lambda: results.append(fn())) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def classic(port: int, key: str, pid: int) -> None:
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
    print(f"/health during 50 concurrent 1080p uploads: p50 {p50:.1f} ms, max {p99_:.1f} ms "
          f"({n} probes); answers {sorted(set(codes))}")  # fmt: skip

    # 503 decided from the headers: fill the pool, then time a big upload's refusal.
    filling = threading.Thread(target=in_threads, args=(12, lambda: request(port, upload)))
    filling.start()
    time.sleep(0.05)  # the pool drains in about 0.3 s here
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
    print(f"/health during a 40,000-part body: p50 {p50:.1f} ms, max {p99_:.1f} ms; {answers}")

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


def measure(port: int, pid: int, name: str, work) -> list:  # type: ignore[no-untyped-def,type-arg]
    """Run `work()` (returning statuses) while probing /health; print one line of figures."""
    reset_peak(pid)
    before = rss_mib(pid)
    statuses: list = []  # type: ignore[type-arg]
    started = time.perf_counter()
    _, worst, _ = during(port, lambda: statuses.extend(work()))
    took = time.perf_counter() - started
    peak = rss_mib(pid, "VmHWM") - before
    print(f"{name:44s} {sorted(set(statuses))}  {took:7.2f} s  /health worst {worst:7.1f} ms"
          f"  peak RSS +{peak:.0f} MiB")  # fmt: skip
    return statuses


def blocks(port: int, key: str, pid: int) -> None:
    auth = {"X-API-Key": key, "Content-Type": "application/octet-stream"}
    for name, data in (
        ("GIF, 800,000 comment sub-blocks (1.6 MB)", gif_comments(800_000)),
        ("JPEG, 4.9 M empty COM segments (19.6 MB)", jpeg_comments(4_900_000)),
        ("PNG, 1.6 M private chunks (19.2 MB)", png_chunks(1_600_000)),
    ):
        upload = post("/api/v1/detect?models=objects", data, auth)
        measure(port, pid, name, lambda: [request(port, upload, timeout=900)[0]])  # noqa: B023


def progressive_jpeg() -> bytes:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (700, 700, 3), np.uint8)
    big = PILImage.fromarray(small).resize((7000, 7000), PILImage.BILINEAR)
    out = io.BytesIO()
    big.save(out, format="JPEG", quality=75, progressive=True)
    return out.getvalue()


def progressive(port: int, key: str, pid: int) -> None:
    data = progressive_jpeg()
    auth = {"X-API-Key": key, "Content-Type": "image/jpeg"}
    mb = len(data) / 1e6
    for name, path, count in (
        (f"progressive 7000×7000 ({mb:.1f} MB), objects,faces,genderage",
         "/api/v1/detect?models=objects,faces,genderage", 1),
        ("the same, HomeGallery /faces", f"/hg/{key}/faces", 1),
        ("the same, 4 at once, objects,faces,genderage",
         "/api/v1/detect?models=objects,faces,genderage", 4),
    ):  # fmt: skip
        upload = post(path, data, auth)
        measure(port, pid, name, lambda: in_threads(count, lambda: request(port, upload)[0]))  # noqa: B023


def big_json(port: int, key: str, pid: int) -> None:
    body = b'{"a": "' + b"x" * (19 << 20) + b'"}'
    upload = post("/v1/vision/detection", body, {"Content-Type": "application/json"})
    for count in (1, 4):
        measure(port, pid, f"{count} unauthenticated 19 MB JSON to /v1/",
                lambda: in_threads(count, lambda: request(port, upload)[0]))  # noqa: B023  # fmt: skip


def gauge(port: int, key: str) -> str:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers={"X-API-Key": key})
    with urllib.request.urlopen(req, timeout=30) as r:
        text = r.read().decode()
    return next(ln for ln in text.splitlines() if 'stage="admitted"' in ln).split()[-1]


def slots(port: int, key: str, pid: int) -> None:
    """Keyless slow bodies held open while a keyed request is timed; vanishing ones, then
    the admission gauge."""
    form = {"Content-Type": "multipart/form-data; boundary=b"}
    head = post("/v1/vision/detection", b"", form).replace(
        b"Content-Length: 0", b"Content-Length: 1000000"
    )
    field = b'--b\r\nContent-Disposition: form-data; name="min_confidence"\r\n\r\n0.'
    held = []
    for _ in range(24):  # a form whose first field never ends: its key is not known yet
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(head + field + b"1" * 1000)
        held.append(sock)
    time.sleep(0.5)
    small = encode_jpeg(np.zeros((64, 64, 3), np.uint8))
    keyed = {"X-API-Key": key, "Content-Type": "image/jpeg"}
    status, took = request(port, post("/api/v1/detect?models=objects", small, keyed))
    print(f"keyed request with 24 slow keyless bodies held open: {status} in {took:.2f} s")
    for sock in held:
        sock.close()
    for _ in range(5):  # rounds of bodies that vanish half-way, at staggered moments
        socks = []
        for i in range(100):
            sock = socket.create_connection(("127.0.0.1", port))
            sock.sendall(head + field + b"1" * (i * 10))
            socks.append(sock)
        for sock in socks:
            time.sleep(0.002)
            sock.close()
    time.sleep(1)
    print(f"admitted gauge after 500 vanishing keyless bodies: {gauge(port, key)}")


def big_gallery(path: Path, count: int) -> None:
    import json

    rng = np.random.default_rng(0)
    rows = {
        str(i + 1): {"id": f"{i:012x}", "name": f"person {i // 5}", "model": "dlib",
                     "created": 0.0, "source": "bench",
                     "embedding": [round(float(v), 7) for v in rng.standard_normal(128)]}
        for i in range(count)
    }  # fmt: skip
    path.write_text(json.dumps({"samples": rows}))


def gallery(port: int, key: str, pid: int) -> None:
    auth = {"X-API-Key": key}

    def call(method: str, path: str) -> list[int]:
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method, headers=auth)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                r.read()
                return [r.status]
        except urllib.error.HTTPError as exc:
            return [exc.code]

    call("GET", "/api/v1/recognition/subjects")  # the first read of the file
    for name, method, path in (
        ("30,000 samples: delete a name that is not there", "DELETE",
         "/api/v1/recognition/subjects/nobody"),
        ("30,000 samples: list subjects", "GET", "/api/v1/recognition/subjects"),
        ("30,000 samples: list faces", "GET", "/api/v1/recognition/faces?size=1000"),
    ):  # fmt: skip
        measure(port, pid, name, lambda: call(method, path))  # noqa: B023


def show(port: int, name: str, raw: bytes) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status = answer.split(b" ", 2)[1].decode()
    body = answer.partition(b"\r\n\r\n")[2][:100]
    print(f"{name:44s} {status} {body!r}")


def names(port: int, key: str, pid: int) -> None:
    """Inputs that once gave 500s; each line: what was sent, the status."""
    import json

    small = encode_jpeg(np.zeros((64, 64, 3), np.uint8))
    source = Loopback((samples.fetch() / "face_detection_input.jpg").read_bytes())
    url = f"http://127.0.0.1:{source.port}/x.jpg"
    nested = b"[" * 3000
    keyed = {"X-API-Key": key}
    cases: list[tuple[str, str, bytes, dict[str, str]]] = [
        ("nested JSON, login", "/api/v1/login", nested, {}),
        ("nested JSON, /v1/vision/detection", "/v1/vision/detection", nested, {}),
        ("nested JSON, /v1/vision/face/register", "/v1/vision/face/register", nested, {}),
        ("nested JSON, /detect (key)", "/detect", nested, keyed),
        ("nested JSON, /api/v1/infer (key)", "/api/v1/infer", nested, keyed),
        ("nested JSON, /api/v1/detect (key)", "/api/v1/detect", nested, keyed),
        ("password with a lone surrogate", "/api/v1/login",
         b'{"username": "bench", "password": "\\ud800"}', {}),
        ("subject with a lone surrogate", "/api/v1/recognition/faces",
         json.dumps({"subject": "\ud800", "url": url}).encode(), keyed),
        ("DOODS id with a lone surrogate", "/detect",
         b'{"id": "\\ud800", "data": "' + __import__("base64").b64encode(small) + b'"}', keyed),
    ]  # fmt: skip
    for name, path, body, headers in cases:
        show(port, name, post(path, body, {"Content-Type": "application/json", **headers}))
    listing = post("/api/v1/recognition/subjects", b"", keyed).replace(b"POST", b"GET", 1)
    show(port, "then: list subjects", listing)
    form = (
        b'--b\r\nContent-Disposition: form-data; name="objects.\xff"\r\n\r\n1\r\n--b\r\n'
        b'Content-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
        b"Content-Type: image/jpeg\r\n\r\n" + small + b"\r\n--b--\r\n"
    )
    multi = {"Content-Type": "multipart/form-data; boundary=b", **keyed}
    show(port, "multipart field name with a raw 0xff byte", post("/api/v1/detect", form, multi))
    jpeg = {"Content-Type": "image/jpeg", **keyed}
    escape = "/api/v1/detect?models=yolo&yolo.model=../../../../etc"
    show(port, "yolo.model=../../../../etc", post(escape, small, jpeg))
    show(
        port,
        "a detector whose model is not pulled",
        post("/api/v1/detect?models=yolo", small, jpeg),
    )
    close = b"Connection: close\r\n\r\n"
    show(port, "request line GET *", b"GET * HTTP/1.1\r\nHost: x\r\n" + close)
    show(port, "a 20 kB header", b"GET /health HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n" + close)
    source.stop()


class Loopback:
    """An HTTP server on loopback that answers every GET with one image."""

    def __init__(self, image: bytes) -> None:
        import http.server

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "image/jpeg")
                self.send_header("Content-Length", str(len(image)))
                self.end_headers()
                self.wfile.write(image)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


CASES = {
    "classic": classic,
    "blocks": blocks,
    "progressive": progressive,
    "json": big_json,
    "slots": slots,
    "gallery": gallery,
    "names": names,
}

if __name__ == "__main__":
    main()
