"""Time PostgreSQL adds per request: the same server on TinyDB files and on PostgreSQL.

    .venv/bin/python bench/database.py [--requests 200] [--rounds 3] [--database URL]

Without --database a throwaway cluster is started from the machine's PostgreSQL server
binaries (as tests/services.py does). Each round runs the files server, then the database
server (alternating, so drift hits both), one client at a time: a key-authenticated
`/api/v1/detect` (objects on a 320×212 JPEG) and a DeepStack recognition against a
gallery of 50 people. Prints p50 per route and backend, and the difference.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import sys
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from benchmark import ServerProcess, multipart
from processes import cpu_name
from services import Cluster, new_database

from mlapi import samples
from mlapi.images import decode, encode_jpeg
from mlapi.store import ModelCache


def p50(server: ServerProcess, path: str, body: bytes, headers: dict[str, str], n: int) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    times = []
    for _ in range(n):
        started = time.perf_counter()
        conn.request("POST", path, body, headers)
        answer = conn.getresponse()
        answer.read()
        if answer.status != 200:
            raise RuntimeError(f"{path}: {answer.status}")
        times.append((time.perf_counter() - started) * 1000)
    conn.close()
    return statistics.median(times)


def enrol(server: ServerProcess, face: bytes, people: int) -> None:
    for i in range(people):
        body, content_type = multipart(face, "image", {"userid": f"person {i}"})
        headers = {"Content-Type": content_type, "X-API-Key": server.key}
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        conn.request("POST", "/v1/vision/face/register", body, headers)
        conn.getresponse().read()
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database", help="a PostgreSQL server's URL (default: a new cluster)")
    args = parser.parse_args()
    cluster = None if args.database else Cluster()
    server_url = args.database or cluster.url()  # type: ignore[union-attr]
    folder = samples.fetch(ModelCache())
    small = decode((folder / "object_detection_input.jpg").read_bytes()).pixels
    photo = encode_jpeg(cv2.resize(small, (320, 212), interpolation=cv2.INTER_AREA))
    face = (folder / "gender_detection_input.jpg").read_bytes()
    print(f"{cpu_name()}; {args.requests} sequential requests per route, median ms")
    found: dict[tuple[str, str], list[float]] = {}
    try:
        for round_ in range(args.rounds):
            for backend in ("files", "postgres"):
                os.environ.pop("MLAPI_DATABASE_URL", None)
                if backend == "postgres":  # the user, the key and the server: all there
                    os.environ["MLAPI_DATABASE_URL"] = new_database(server_url)
                server = ServerProcess(
                    "--models", "objects,faces,faceprint,recognize", "--workers", "1"
                )
                try:
                    enrol(server, face, 50)
                    detect = p50(
                        server, "/api/v1/detect", photo,
                        {"X-API-Key": server.key, "Content-Type": "image/jpeg"}, args.requests,
                    )  # fmt: skip
                    body, content_type = multipart(face, "image", {"api_key": server.key})
                    recognize = p50(
                        server, "/v1/vision/face/recognize", body,
                        {"Content-Type": content_type}, args.requests // 4,
                    )  # fmt: skip
                finally:
                    server.close()
                found.setdefault(("detect", backend), []).append(detect)
                found.setdefault(("recognize", backend), []).append(recognize)
                print(f"round {round_ + 1} {backend:8s}: detect {detect:6.2f}, "
                      f"recognize {recognize:6.2f}")  # fmt: skip
    finally:
        if cluster is not None:
            cluster.close()
    for route in ("detect", "recognize"):
        files = statistics.median(found[(route, "files")])
        postgres = statistics.median(found[(route, "postgres")])
        print(f"{route:9s}: files {files:6.2f} ms, postgres {postgres:6.2f} ms, "
              f"added {postgres - files:+.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
