"""`GET /metrics`: the server's counters as one Prometheus text document.

A process takes a `Snapshot` of its own counters; with several processes (see
mlapi.processes) each publishes its snapshot and a scrape sums them all, so one scrape is
the whole server whichever process answers it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

SIGHTINGS = ("kept", "repeated", "refused", "dropped", "failed")  # see mlapi.sightings


class Snapshot(TypedDict):
    requests: list[tuple[str, str, int, int]]  # method, route, status, count
    rejected: list[tuple[int, int]]  # status, count
    queue: dict[str, int]  # stage → requests
    inference: list[tuple[str, int, float]]  # detector, runs, seconds
    latency: list[tuple[str, int, float]]  # route, requests answered, seconds
    ready: bool
    sightings: NotRequired[list[tuple[str, int]]]  # faces seen, by outcome


def merge(snapshots: list[Snapshot]) -> Snapshot:
    requests: Counter[tuple[str, str, int]] = Counter()
    rejected: Counter[int] = Counter()
    queue: Counter[str] = Counter()
    runs: Counter[str] = Counter()
    seconds: dict[str, float] = {}
    answered: Counter[str] = Counter()
    took: dict[str, float] = {}
    seen: Counter[str] = Counter()
    for snap in snapshots:
        for outcome, n in snap.get("sightings", []):
            seen[outcome] += n
        for route, count, elapsed in snap.get("latency", []):
            answered[route] += count
            took[route] = took.get(route, 0.0) + elapsed
        for method, route, status, n in snap["requests"]:
            requests[(method, route, int(status))] += n
        for status, n in snap["rejected"]:
            rejected[int(status)] += n
        queue.update(snap["queue"])
        for name, count, spent in snap["inference"]:
            runs[name] += count
            seconds[name] = seconds.get(name, 0.0) + spent
    return {
        "requests": [(*key, n) for key, n in sorted(requests.items())],
        "rejected": sorted(rejected.items()),
        "queue": dict(queue),
        "inference": [(name, runs[name], seconds[name]) for name in sorted(runs)],
        "latency": [(route, answered[route], took[route]) for route in sorted(answered)],
        "ready": all(snap["ready"] for snap in snapshots),
        "sightings": sorted(seen.items()),
    }


def _label(value: Any) -> str:
    return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render(snap: Snapshot, processes: int = 1, devices: Mapping[str, str] | None = None) -> str:
    """The document; `devices`: where each detector runs (its `device` label: cpu,
    openvino:GPU, cuda:0…, as this process's engine runs it)."""
    where = devices or {}
    lines = [
        "# HELP mlapi_requests_total Requests answered, by method, route and status.",
        "# TYPE mlapi_requests_total counter",
    ]
    for method, route, status, n in snap["requests"]:
        lines.append(
            f'mlapi_requests_total{{method="{_label(method)}",route="{_label(route)}",'
            f'status="{status}"}} {n}'
        )
    lines += [
        "# HELP mlapi_rejected_total Requests refused for size, rate or load, by status.",
        "# TYPE mlapi_rejected_total counter",
        *(f'mlapi_rejected_total{{status="{s}"}} {n}' for s, n in snap["rejected"]),
        "# HELP mlapi_queue_depth Requests admitted and not yet answered; on the pool.",
        "# TYPE mlapi_queue_depth gauge",
        *(
            f'mlapi_queue_depth{{stage="{stage}"}} {snap["queue"].get(stage, 0)}'
            for stage in ("waiting", "admitted", "inference")
        ),
        "# HELP mlapi_inference_seconds Time in each detector, on the device it runs on.",
        "# TYPE mlapi_inference_seconds summary",
    ]
    for name, runs, seconds in snap["inference"]:
        labels = f'detector="{_label(name)}",device="{_label(where.get(name, "cpu"))}"'
        lines.append(f"mlapi_inference_seconds_count{{{labels}}} {runs}")
        lines.append(f"mlapi_inference_seconds_sum{{{labels}}} {seconds:.6f}")
    lines += [
        "# HELP mlapi_request_seconds Time from a request's arrival to its answer, by route.",
        "# TYPE mlapi_request_seconds summary",
    ]
    for route, answered, took in snap.get("latency", []):
        lines.append(f'mlapi_request_seconds_count{{route="{_label(route)}"}} {answered}')
        lines.append(f'mlapi_request_seconds_sum{{route="{_label(route)}"}} {took:.6f}')
    counted = dict(snap.get("sightings", []))
    lines += [
        "# HELP mlapi_face_sightings_total Faces recognition saw, by what became of them: "
        "kept, repeated (the same face from the same source a moment ago), refused (the "
        "quality gate), dropped (the recorder's queue full) or failed (the store away).",
        "# TYPE mlapi_face_sightings_total counter",
        *(f'mlapi_face_sightings_total{{outcome="{o}"}} {counted.get(o, 0)}' for o in SIGHTINGS),
    ]
    lines += [
        "# HELP mlapi_processes Server processes answering on this port.",
        "# TYPE mlapi_processes gauge",
        f"mlapi_processes {processes}",
        f"mlapi_ready {int(snap['ready'])}",
    ]
    return "\n".join(lines) + "\n"
