"""Where a model runs: the `--device` setting, what this machine offers, and the
onnxruntime execution providers (with their options, from the settings) for each device.

A device is `cpu`, `auto`, `openvino[:CPU|GPU|NPU|AUTO]` (OpenVINO's plugin; plain
`openvino` is the first of its GPU, NPU and CPU it sees, `GPU.1` one GPU of several, `AUTO`
OpenVINO's own choice) or `cuda[:N]`. The setting is a default device, then `DETECTOR=DEVICE`
entries for single detectors (`auto,faces=cpu`). `auto` is the first available of CUDA,
OpenVINO's GPU, its NPU, the CPU. Nothing here imports onnxruntime until a session is made,
so parsing stays instant for `mlapi --help`.
"""

from __future__ import annotations

import ctypes
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPENVINO = "OpenVINOExecutionProvider"
CUDA = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"
_DEVICE = re.compile(r"cpu|auto|openvino(?::(cpu|gpu(?:\.\d+)?|npu|auto))?|cuda(?::(\d+))?")
_DETECTOR = re.compile(r"[a-z0-9][a-z0-9_.-]{0,63}")
VARIANT = {OPENVINO: "openvino", CUDA: "cuda"}


class DeviceUnavailable(Exception):
    """This machine or this onnxruntime build cannot run a model on the device asked for."""


def parse_device(text: str) -> str:
    """One device in its canonical spelling (`OpenVINO:gpu` → `openvino:GPU`, `cuda` →
    `cuda:0`); ValueError names the choices."""
    word = text.strip().lower()
    match = _DEVICE.fullmatch(word)
    if not match:
        raise ValueError(
            f"unknown device {text.strip()!r} (choose cpu, auto, openvino[:CPU|GPU|NPU|AUTO] "
            "or cuda[:N])"
        )
    if word.startswith("openvino"):
        return "openvino:" + match.group(1).upper() if match.group(1) else "openvino"
    if word.startswith("cuda"):
        return f"cuda:{int(match.group(2) or 0)}"
    return word


def parse_devices(text: str) -> str:
    """The `--device` setting in its canonical spelling: an optional default device, then
    DETECTOR=DEVICE entries, comma-separated (`AUTO, faces=CPU` → `auto,faces=cpu`)."""
    default, per = split(text)
    entries = [default] if default != "cpu" or not per else []
    return ",".join(entries + [f"{name}={device}" for name, device in per.items()])


def split(text: str) -> tuple[str, dict[str, str]]:
    """(the default device, each named detector's device) of a `--device` setting."""
    default, per = "cpu", {}
    defaults = 0
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, device = part.rpartition("=")
        if not sep:
            default, defaults = parse_device(part), defaults + 1
            continue
        name = name.strip()
        if not _DETECTOR.fullmatch(name):
            raise ValueError(f"{name!r} is not a detector's name (in {part!r})")
        per[name] = parse_device(device)
    if defaults > 1:
        raise ValueError(f"{text.strip()!r} names more than one default device")
    return default, per


@dataclass(frozen=True)
class ProviderSettings:
    """What the settings say about each provider (see RuntimeConfig)."""

    openvino_cache: Path | None = None  # compiled models; None: do not cache
    openvino_options: Mapping[str, str] | None = None  # more OpenVINO provider options
    cuda_options: Mapping[str, str] | None = None  # more CUDA provider options


def provider_options(text: str) -> dict[str, str]:
    """`KEY=VALUE,KEY=VALUE` (the --openvino-options and --cuda-options settings); a comma
    inside brackets is the value's (`reshape_input=x[1,3,416,416]`)."""
    found: dict[str, str] = {}
    for part in (p.strip() for p in re.split(r",(?![^\[]*\])", text)):
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{part!r} is not KEY=VALUE")
        found[key.strip()] = value.strip()
    return found


def providers(device: str, threads: int, settings: ProviderSettings, streams: int = 1) -> list[Any]:
    """onnxruntime's providers for a concrete device (not `auto`), best first, each with
    its options; DeviceUnavailable when this build or machine lacks it. `streams`: how many
    requests may run the session at once (OpenVINO runs one a stream, each on `threads`
    threads; onnxruntime's CPU provider needs no telling)."""
    if device == "cpu":
        return [CPU_PROVIDER]
    if device.startswith("openvino:"):
        target = device.split(":", 1)[1]
        check_openvino(target)
        options = {"device_type": target, "num_streams": str(streams)}
        if target == "CPU":
            options["num_of_threads"] = str(threads * streams)
        if settings.openvino_cache is not None and _writable(settings.openvino_cache):
            options["cache_dir"] = str(settings.openvino_cache)
        options.update(settings.openvino_options or {})
        return [(OPENVINO, options), CPU_PROVIDER]
    if device.startswith("cuda:"):
        index = int(device.split(":", 1)[1])
        check_cuda(index)
        preload_cuda()
        return [(CUDA, {"device_id": str(index), **(settings.cuda_options or {})}), CPU_PROVIDER]
    raise DeviceUnavailable(f"{device!r} is not a device onnxruntime can be given")


def _writable(folder: Path) -> bool:
    """Whether OpenVINO can keep its compiled models here (a read-only cache folder only
    costs compiling again at each start: no reason to leave OpenVINO)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(folder, os.W_OK)


def _available() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def _missing_build(provider: str) -> DeviceUnavailable:
    variant = VARIANT[provider]
    return DeviceUnavailable(
        f"this onnxruntime has no {provider} (install the {variant} variant: "
        f"MLAPI_EXTRAS={variant} ./run, or see docs/accelerators.md)"
    )


def openvino_devices() -> list[str]:
    """The devices OpenVINO sees here (CPU, GPU, GPU.1, NPU…); none without its build."""
    if OPENVINO not in _available():
        return []
    from onnxruntime.capi import _pybind_state

    try:
        return list(_pybind_state.get_available_openvino_device_ids())
    except (AttributeError, RuntimeError):  # a build without the call: say nothing
        return []


def check_openvino(target: str) -> None:
    if OPENVINO not in _available():
        raise _missing_build(OPENVINO)
    if target == "AUTO":
        return  # OpenVINO picks among what it sees
    seen = openvino_devices()
    if target not in seen and not (target == "GPU" and any(d.startswith("GPU") for d in seen)):
        raise DeviceUnavailable(f"OpenVINO sees no {target} here (it sees {', '.join(seen)})")


@functools.cache
def cuda_devices() -> int:
    """How many CUDA devices the driver reports (0: no driver, no device)."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return int(count.value)


@functools.cache
def preload_cuda() -> None:
    """Load CUDA's and cuDNN's libraries from NVIDIA's wheels, where onnxruntime-gpu
    installed them (its preload_dlls, 1.21 and later); from the system's otherwise."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        preload()


def check_cuda(index: int) -> None:
    if CUDA not in _available():
        raise _missing_build(CUDA)
    count = cuda_devices()
    if index >= count:
        raise DeviceUnavailable(
            f"no CUDA device {index} here (the driver reports {count or 'none'})"
        )


@functools.cache
def resolve_auto() -> str:
    """`auto` on this machine: the first available of CUDA, OpenVINO's GPU, its NPU, the
    CPU."""
    available = _available()
    if CUDA in available and cuda_devices() > 0:
        return "cuda:0"
    seen = openvino_devices()
    for target in ("GPU", "NPU"):
        if any(d == target or d.startswith(target + ".") for d in seen):
            return f"openvino:{target}"
    return "cpu"


@functools.cache
def resolve_openvino() -> str:
    """Plain `openvino`: the first OpenVINO device of GPU, NPU and CPU it sees here (its
    CPU when it sees none: the error then says what is missing)."""
    seen = openvino_devices()
    for target in ("GPU", "NPU"):
        if any(d == target or d.startswith(target + ".") for d in seen):
            return f"openvino:{target}"
    return "openvino:CPU"


def concrete(device: str) -> str:
    """A device as it runs here: `auto` and plain `openvino` resolved."""
    if device == "auto":
        return resolve_auto()
    if device == "openvino":
        return resolve_openvino()
    return device


def provider_name(device: str) -> str:
    """The onnxruntime provider a concrete device runs on."""
    if device.startswith("openvino:"):
        return OPENVINO
    if device.startswith("cuda:"):
        return CUDA
    return CPU_PROVIDER
