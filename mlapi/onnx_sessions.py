"""Every onnxruntime session is made here, from the runtime's settings.

Execution providers come from configuration (`RuntimeConfig.providers`; the CPU only
today): this is the one place where CUDA, OpenVINO or CoreML would plug in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mlapi.config import CPU


def make_session(
    model: Path,
    threads: int = 1,
    spin_microseconds: int = 0,
    providers: Sequence[str] = CPU,
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
    return ort.InferenceSession(str(model), opts, providers=list(providers))
