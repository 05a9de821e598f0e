"""Throughput of `mlapi serve --processes N` against one process, on this machine.

    .venv/bin/python bench/processes.py [--counts 1,2] [--rounds 3] [--seconds 10]

Each round starts the server once per process count (alternating, so drift in the machine
hits every count alike) with `--workers` threads per process chosen so every count uses
the same cores (cores / N each), loads `/api/v1/detect` (objects, a 640×424 JPEG) from
closed-loop keep-alive clients, and prints req/s, p50 and errors; the last lines are the
medians over rounds and the ratio to one process. The load generator runs on the same
machine, so on a small one it takes CPU from the server: compare counts, not machines.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).parent))
from benchmark import ServerProcess, load_test

from mlapi import samples
from mlapi.images import decode, encode_jpeg
from mlapi.store import ModelCache


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", default="1,2", help="process counts to compare")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8, help="concurrent connections")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    photo = (samples.fetch(ModelCache()) / "object_detection_input.jpg").read_bytes()
    pixels = decode(photo).pixels
    body = encode_jpeg(cv2.resize(pixels, (640, 424), interpolation=cv2.INTER_AREA))
    print(f"{cpu_name()}, {os.cpu_count()} cores; {args.clients} clients, {args.seconds:.0f} s")
    results: dict[int, list[float]] = {n: [] for n in counts}
    for round_ in range(args.rounds):
        for n in counts:
            workers = max(1, args.cores // n)
            server = ServerProcess(
                "--models", "objects", "--processes", str(n), "--workers", str(workers),
                "--threads", "1", "--lone-threads", "1",
            )  # fmt: skip
            try:
                rate, p50, _, errors, _ = load_test(
                    server.port,
                    "/api/v1/detect",
                    [(body, "image/jpeg")],
                    {"X-API-Key": server.key},
                    args.clients,
                    args.seconds,
                )
            finally:
                server.close()
            results[n].append(rate)
            print(
                f"round {round_ + 1}: {n} process(es) × {workers} worker(s): "
                f"{rate:6.1f} req/s, p50 {p50:6.1f} ms, {errors} errors"
            )
    base = statistics.median(results[counts[0]])
    for n in counts:
        median = statistics.median(results[n])
        print(f"median {n} process(es): {median:6.1f} req/s ({median / base:.2f}× {counts[0]})")


if __name__ == "__main__":
    main()
