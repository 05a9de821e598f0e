"""Turn TF.js graph models and TFLite files into ONNX with tensorflow + tf2onnx.

Runs in a child process (`python -m mlapi.store.convert SRC DST`) so TensorFlow is never
imported into the CLI or the server. Needs the `import` extra: pip install 'mlapi-vision[import]'.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from mlapi.errors import MlapiError

OPSET = 17
# Bump when conversion changes what it writes, so models made the old way are made again.
RECIPE_VERSION = 4


class ConvertError(MlapiError):
    status = 500


def to_onnx(src: Path, dst: Path, outputs: str | None = None, dynamic_hw: bool = False) -> None:
    """Convert `src` (model.json or .tflite) into the ONNX file `dst`, atomically, in the
    canonical form that gives the same bytes on every run (see `canonical`).

    `outputs`: comma-separated tensor names to expose instead of the graph's own outputs.
    `dynamic_hw`: let a fully convolutional net take any input height and width.
    """
    if getattr(sys, "frozen", False):  # a binary from build.spec has no TensorFlow inside
        raise ConvertError(
            f"this mlapi binary cannot convert {src.name} (no TensorFlow inside); its default "
            "models are bundled. Convert with: pip install 'mlapi-vision[import]'"
        )
    tmp = dst.with_name(dst.name + ".part")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    args = [str(src), str(tmp), outputs or "", "1" if dynamic_hw else ""]
    done = subprocess.run(
        [sys.executable, "-m", "mlapi.store.convert", *args],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        lines = [ln for ln in (done.stderr or "").splitlines() if ln.strip()]
        if any("No module named" in ln for ln in lines):
            raise ConvertError(
                "converting needs TensorFlow and tf2onnx: pip install 'mlapi-vision[import]'"
            )
        raise ConvertError(f"conversion of {src.name} failed: {' | '.join(lines[-3:])}")
    tmp.replace(dst)


def _patch_tf2onnx() -> None:
    """Two fixes tf2onnx 1.17 needs for these models (see docs/models.md)."""
    import numpy as np

    if not hasattr(np, "product"):  # removed in NumPy 2, still called by tf2onnx
        np.product = np.prod
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.framework import op_def_registry
    from tf2onnx import tfjs_utils

    original = tfjs_utils.tfjs_node_to_tf_node_def

    def complete_node_def(node):  # type: ignore[no-untyped-def]
        # The model.json files omit attributes TensorFlow requires (TArgs on fused ops,
        # index_type, …): fill them with the op registry's defaults.
        node_def = original(node)
        op_def = op_def_registry.get(node_def.op)
        for attr in op_def.attr if op_def else ():
            if attr.name in node_def.attr:
                continue
            if attr.name == "TArgs":
                count = node_def.attr["num_args"].i if "num_args" in node_def.attr else 0
                node_def.attr["TArgs"].list.type.extend([types_pb2.DT_FLOAT] * count)
            elif attr.HasField("default_value"):
                node_def.attr[attr.name].CopyFrom(attr.default_value)
        return node_def

    tfjs_utils.tfjs_node_to_tf_node_def = complete_node_def


def _main(src: str, dst: str, outputs: str, dynamic_hw: str) -> None:
    _patch_tf2onnx()
    from tf2onnx import convert

    from mlapi.store.canonical import canonicalise

    raw = dst + ".raw"
    flag = "--tflite" if src.endswith(".tflite") else "--tfjs"
    sys.argv = ["tf2onnx", flag, src, "--output", raw, "--opset", str(OPSET)]
    if outputs:
        sys.argv += ["--outputs", outputs]
    try:
        convert.main()
        canonicalise(Path(raw), Path(dst), dynamic_hw=bool(dynamic_hw))
    finally:
        Path(raw).unlink(missing_ok=True)


if __name__ == "__main__":
    _main(*[*sys.argv[1:], "", ""][:4])
