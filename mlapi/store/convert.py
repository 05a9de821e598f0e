"""Turn TF.js graph models and TFLite files into ONNX.

TF.js graph models are converted by mlapi itself (`tfjs_onnx`: numpy and onnx, in this
process, well under a second a model): every catalog model, and a user's own model when it
uses only the operations that converter covers. The rest (other operations, and TFLite
files) go to tensorflow + tf2onnx, the `import` extra, in one child process per pull
(`python -m mlapi.store.convert PLAN`), so TensorFlow is never imported into the CLI or the
server and starts once however many models there are. Without the extra they are refused
with the command that installs it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlapi.errors import ConvertError, NotCovered

OPSET = 17
# Bump when conversion changes what it writes, so models made the old way are made again.
RECIPE_VERSION = 6
TF2ONNX_INSTALL = "pip install 'tensorflow-cpu>=2.16,<3' 'tf2onnx>=1.16,<2'"


@dataclass(frozen=True)
class Job:
    """One conversion: `src` (model.json or .tflite) into the ONNX file `dst`.

    `outputs`: comma-separated tensor names to expose instead of the graph's own outputs.
    `dynamic_hw`: let a fully convolutional net take any input height and width.
    `label`: the model's name in messages (else the file's).
    """

    src: Path
    dst: Path
    outputs: str = ""
    dynamic_hw: bool = False
    label: str = ""


def tf2onnx_available() -> bool:
    """Whether this install has the import extra (never inside a binary)."""
    if getattr(sys, "frozen", False):
        return False
    return all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "tf2onnx"))


def missing_message(what: str) -> str:
    """Why `what` cannot be converted without the import extra, and how to get it."""
    if getattr(sys, "frozen", False):  # a binary from build.spec has no TensorFlow inside
        return (
            f"this mlapi binary cannot convert {what} (it needs TensorFlow, and none is "
            "inside). Convert it with mlapi in a Python environment with the import extra: "
            + TF2ONNX_INSTALL
        )
    return (
        f"converting {what} needs TensorFlow and tf2onnx (the import extra) in mlapi's "
        f"environment: {TF2ONNX_INSTALL}"
    )


def convert_all(jobs: list[Job], done: Callable[[Job], None] | None = None) -> dict[Path, str]:
    """Convert every job, each written atomically in the canonical form that gives the same
    bytes on every run (see `canonical`): TF.js models by mlapi's converter where it covers
    them, the rest in one TensorFlow process. Returns {dst: error} for the jobs that
    failed; calls `done` per success."""
    from mlapi.store import tfjs_onnx  # not at the top: `python -m` runs it as a script

    errors: dict[Path, str] = {}
    rest: list[Job] = []
    for job in jobs:
        if job.src.suffix.lower() != ".json":
            rest.append(job)
            continue
        label = job.label or job.src.name
        try:
            tfjs_onnx.convert(job.src, job.dst, job.outputs, job.dynamic_hw, label)
        except NotCovered as exc:
            if tf2onnx_available():
                rest.append(job)
            else:
                errors[job.dst] = f"{exc}; {missing_message('it')}"
            continue
        except ConvertError as exc:
            errors[job.dst] = str(exc)
            continue
        except Exception as exc:  # a model this converter misreads must not stop the pull
            errors[job.dst] = f"conversion of {label} failed: {type(exc).__name__}: {exc}"
            continue
        if done:
            done(job)
    if rest and not tf2onnx_available():
        errors |= {job.dst: missing_message(job.label or job.src.name) for job in rest}
    elif rest:
        errors |= _convert_with_tensorflow(rest, done)
    return errors


def _convert_with_tensorflow(
    jobs: list[Job], done: Callable[[Job], None] | None = None
) -> dict[Path, str]:
    """Run every job through tf2onnx in one child process (TensorFlow starts once, 5-10 s)."""
    plan = [[str(j.src), str(j.dst) + ".part", j.outputs, j.dynamic_hw] for j in jobs]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="-1")
    errors: dict[Path, str] = {}
    by_part = {str(j.dst) + ".part": j for j in jobs}
    # The child's stderr goes to a file, not a pipe: TensorFlow's chatter would fill a pipe.
    with tempfile.TemporaryFile("w+") as log:
        child = subprocess.Popen(
            [sys.executable, "-m", "mlapi.store.convert", json.dumps(plan)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
        assert child.stdout is not None
        for line in child.stdout:  # one JSON line per job, as each finishes
            if not line.startswith('{"dst"'):
                continue  # something a library printed at the C level
            report = json.loads(line)
            job = by_part.pop(report["dst"])
            part = Path(report["dst"])
            if report.get("error") or not part.exists():
                part.unlink(missing_ok=True)
                errors[job.dst] = f"conversion of {job.src.name} failed: {report.get('error')}"
                continue
            part.replace(job.dst)
            if done:
                done(job)
        child.wait()
        log.seek(0)
        lines = [ln for ln in log.read().splitlines() if ln.strip()]
    for job in by_part.values():  # the child died before reporting these
        Path(str(job.dst) + ".part").unlink(missing_ok=True)
        errors[job.dst] = f"conversion of {job.src.name} failed: {' | '.join(lines[-3:])}"
    return errors


def to_onnx(
    src: Path,
    dst: Path,
    outputs: str | None = None,
    dynamic_hw: bool = False,
    label: str = "",
) -> None:
    """Convert one model (see `Job`); raises ConvertError."""
    errors = convert_all([Job(src, dst, outputs or "", dynamic_hw, label)])
    if errors:
        raise ConvertError(errors[dst])


def _patch_tf2onnx() -> None:
    """Two fixes tf2onnx 1.17 needs for TF.js models from recent converters."""
    import numpy as np

    if not hasattr(np, "product"):  # removed in NumPy 2, still called by tf2onnx
        np.product = np.prod  # type: ignore[attr-defined]
    from tensorflow.core.framework import types_pb2
    from tensorflow.python.framework import op_def_registry
    from tf2onnx import tfjs_utils

    original = tfjs_utils.tfjs_node_to_tf_node_def

    def complete_node_def(node: Any) -> Any:
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


def _convert(src: str, dst: str, outputs: str, dynamic_hw: bool) -> None:
    from tf2onnx import convert

    from mlapi.store.canonical import canonicalise

    raw = dst + ".raw"
    flag = "--tflite" if src.endswith(".tflite") else "--tfjs"
    sys.argv = ["tf2onnx", flag, src, "--output", raw, "--opset", str(OPSET)]
    if outputs:
        sys.argv += ["--outputs", outputs]
    try:
        convert.main()
        canonicalise(Path(raw), Path(dst), dynamic_hw=dynamic_hw)
    finally:
        Path(raw).unlink(missing_ok=True)


def _main(plan: str) -> None:
    _patch_tf2onnx()
    report = sys.stdout
    sys.stdout = sys.stderr  # tf2onnx's chatter must not mix with the reports
    for src, dst, outputs, dynamic_hw in json.loads(plan):
        error = ""
        try:
            _convert(src, dst, outputs, bool(dynamic_hw))
        except (Exception, SystemExit) as exc:  # one bad model must not stop the others
            error = f"{type(exc).__name__}: {exc}"
        report.write(json.dumps({"dst": dst, "error": error}) + "\n")
        report.flush()


if __name__ == "__main__":
    _main(sys.argv[1])
