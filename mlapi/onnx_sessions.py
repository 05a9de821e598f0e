"""Every onnxruntime session is made here, from the runtime's settings.

Execution providers come from configuration (`RuntimeConfig.device` and the provider
settings beside it, through mlapi.devices): the CPU, OpenVINO or CUDA. `on_device` raises
when the device cannot take the model; the caller (engine.ModelSessions) then falls back to
the CPU, once, with a warning.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlapi.config import CPU
from mlapi.devices import DeviceUnavailable, ProviderSettings, provider_name, providers


def make_session(
    model: Path,
    threads: int = 1,
    spin_microseconds: int = 0,
    providers: Sequence[Any] = CPU,
) -> Any:
    """An inference session on `threads` intra-op threads, with the graph fully optimised.

    `spin_microseconds`: how long idle threads of a multi-threaded session wait awake."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    spin = threads > 1 and spin_microseconds > 0
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if spin:
        opts.add_session_config_entry("session.intra_op.spin_duration_us", str(spin_microseconds))
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if list(providers) == list(CPU):
        return ort.InferenceSession(str(model), opts, providers=list(providers))
    # No silent retry on the CPU (onnxruntime's own prints to stdout): the caller decides.
    return ort.InferenceSession(str(model), opts, providers=list(providers), enable_fallback=0)


def on_device(
    model: Path,
    threads: int,
    spin_microseconds: int,
    device: str,
    settings: ProviderSettings,
    streams: int = 1,
) -> Any:
    """A session on `device` (concrete: not `auto`) for `streams` requests at once, its
    provider's options from the settings; DeviceUnavailable, or onnxruntime's error, when
    the device cannot take it. onnxruntime drops a provider it cannot start with only a log
    line: that is an error here too."""
    chosen = providers(device, threads, settings, streams)
    session = make_session(model, threads, spin_microseconds, chosen)
    wanted = provider_name(device)
    if wanted not in session.get_providers():
        raise DeviceUnavailable(f"onnxruntime could not start {wanted} (its log says why)")
    return session
