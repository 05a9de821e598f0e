"""Turn a TF.js graph model (model.json and its weight files) into ONNX, with numpy and onnx.

No TensorFlow: this covers the operations the catalog's TF.js models use (`OPERATIONS`),
with TensorFlow's semantics. A model with anything else raises `NotCovered`, naming the
operations and the model; `mlapi.store.convert` then hands it to tf2onnx where the import
extra is installed.

Layouts: TF.js tensors are NHWC, ONNX convolutions NCHW. Each tensor remembers how its
stored axes relate to TensorFlow's (`Value.perm`): a convolution's result stays NCHW, and the
elementwise operations, pads, concatenations, splits, resizes and means after it work on
that layout directly (their axes and constants are permuted here, once). A TF Transpose
only changes that record, so onnx-tf's NHWC ↔ NCHW round trips (NanoDet) cost nothing. A
Transpose node is written only where an operation needs TensorFlow's own order (Reshape,
Shape, StridedSlice, Pack) and at the outputs.

Operations whose inputs are all constants are computed here (onnx-tf's reshape arithmetic
in NanoDet, for example), so the graph keeps only what depends on the input. Names come
from a counter in a fixed walk of the graph, and `canonical` then gives the bytes their
final, machine-independent form.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mlapi.errors import ConvertError, NotCovered
from mlapi.store.tfjs_graph import (
    OPSET,
    Shape,
    Value,
    _attr,
    _Graph,
    constant,
    read_model,
)
from mlapi.store.tfjs_ops import (
    _HANDLERS,
    _NCHW_OPS,
)

# -- the converter ------------------------------------------------------------------------


class _Converter:
    def __init__(self, label: str, dynamic_hw: bool, readers: dict[str, list[str]]) -> None:
        self.label = label
        self.g = _Graph(dynamic_hw)
        self.readers = readers  # node name → the ops that read its outputs

    def feeds_nchw(self, node: dict[str, Any]) -> bool:
        """Whether everything reading `node` wants NHWC tensors kept as NCHW."""
        readers = self.readers.get(node["name"], [])
        return bool(readers) and all(op in _NCHW_OPS for op in readers)

    def fail(self, node: dict[str, Any], what: str) -> NotCovered:
        return NotCovered(f"{self.label}: {node['op']} {node['name']!r}: {what}")

    def need_const(self, node: dict[str, Any], value: Value, what: str) -> np.ndarray:
        if value.const is None:
            raise self.fail(node, f"a computed {what} is not supported (only a constant one)")
        return value.const

    # activations shared by the fused operations
    def activate(self, node: dict[str, Any], kind: str, x: Value, args: list[Value]) -> Value:
        g = self.g
        if kind == "Relu":
            name = g.one("Relu", [x.name])
        elif kind == "Relu6":
            zero, six = g.const(np.array(0, np.float32)), g.const(np.array(6, np.float32))
            name = g.one("Clip", [x.name, zero, six])
        elif kind == "Elu":
            name = g.one("Elu", [x.name])
        elif kind == "Sigmoid":
            name = g.one("Sigmoid", [x.name])
        elif kind == "Tanh":
            name = g.one("Tanh", [x.name])
        elif kind == "LeakyRelu":
            alpha = _attr(node, "leakyrelu_alpha")
            name = g.one("LeakyRelu", [x.name], alpha=0.2 if alpha is None else float(alpha))
        elif kind == "Prelu":
            if not args:
                raise self.fail(node, "Prelu without its alpha")
            slope = self.operand(args[0], x)
            name = g.one("PRelu", [x.name, slope])
        else:
            raise self.fail(node, f"the fused operation {kind} is not supported")
        return Value(name, x.dtype, x.shape, perm=x.perm)

    def operand(self, other: Value, like: Value) -> str:
        """`other` (a constant) arranged to broadcast against `like` as `like` is stored."""
        array = self.need_const({"op": "operand", "name": other.name}, other, "operand")
        if array.ndim == 0 or like.perm is None:
            return self.g.const(array)
        rank = like.rank
        if array.ndim > rank:
            raise NotCovered(f"{self.label}: an operand of rank {array.ndim} > {rank}")
        array = array.reshape((1,) * (rank - array.ndim) + array.shape)
        return self.g.const(np.transpose(array, like.layout))

    def fused(self, node: dict[str, Any], x: Value, args: list[Value]) -> tuple[str | None, str]:
        """The bias and the activation of a _Fused* operation (fused_ops: BiasAdd, then one
        of Relu, Relu6, Elu, LeakyRelu, Prelu, Sigmoid, Tanh)."""
        ops = list(_attr(node, "fused_ops") or [])
        if (ops and ops[0] != "BiasAdd") or len(ops) > 2:
            raise self.fail(node, f"the fused operations {', '.join(ops)} are not supported")
        bias = None
        if ops:
            if not args:
                raise self.fail(node, "BiasAdd without its bias")
            bias = self.g.const(self.need_const(node, args[0], "bias").astype(np.float32))
        return bias, ops[1] if len(ops) > 1 else ""


def convert(
    src: Path,
    dst: Path,
    outputs: str = "",
    dynamic_hw: bool = False,
    label: str | None = None,
) -> None:
    """Convert model.json `src` into the ONNX file `dst`, in canonical form.

    `outputs`: comma-separated tensor names to expose instead of the model's own outputs.
    `dynamic_hw`: the first input's height and width (axes 2 and 3) become free.
    Raises NotCovered (naming the operations and `label`, else the file) or ConvertError.
    """
    from mlapi.store.canonical import canonical_model

    label = label or src.name
    model = build(src, outputs, dynamic_hw, label)
    canonical = canonical_model(model, dynamic_hw=dynamic_hw)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_bytes(canonical.SerializeToString(deterministic=True))
    tmp.replace(dst)


def _split_name(tensor: str) -> tuple[str, int]:
    """'node' → (node, 0); 'node:1' → (node, 1)."""
    parts = tensor.lstrip("^").split(":")
    if len(parts) == 1:
        return parts[0], 0
    if len(parts) == 2 and parts[1].isdigit():
        return parts[0], int(parts[1])
    raise NotCovered(f"the tensor name {tensor!r} (function outputs)")


def _wanted_outputs(model: dict[str, Any], nodes: dict[str, Any], outputs: str) -> list[str]:
    """The output tensors, as tf2onnx picks them: those asked for, else the signature's,
    else every output of each node nothing else reads."""
    if outputs:
        return [o.strip() for o in outputs.split(",") if o.strip()]
    signature = model.get("signature") or {}
    if signature.get("outputs"):
        return [v["name"] for v in signature["outputs"].values()]
    used = {_split_name(i)[0] for n in nodes.values() for i in n.get("input", [])}
    skip = ("Const", "Placeholder", "NoOp")
    return [f"{n}:0" for n, node in nodes.items() if n not in used and node["op"] not in skip]


def _needed(nodes: dict[str, Any], outputs: list[str]) -> list[str]:
    """The nodes the outputs depend on, each after its inputs (a fixed depth-first walk)."""
    order: list[str] = []
    state: dict[str, int] = {}  # 1: being visited, 2: done
    for out in outputs:
        stack = [(_split_name(out)[0], False)]
        while stack:
            name, expanded = stack.pop()
            if name not in nodes:
                raise ConvertError(f"the graph has no tensor {name!r}")
            if expanded:
                state[name] = 2
                order.append(name)
                continue
            if state.get(name) == 2:
                continue
            if state.get(name) == 1:
                raise ConvertError(f"the graph has a cycle through {name!r}")
            state[name] = 1
            stack.append((name, True))
            inputs = [i for i in nodes[name].get("input", []) if not i.startswith("^")]
            for tensor in reversed(inputs):
                child = _split_name(tensor)[0]
                if state.get(child) != 2:
                    stack.append((child, False))
    return order


def build(src: Path, outputs: str, dynamic_hw: bool, label: str) -> Any:
    """The ONNX ModelProto of model.json `src`, before canonical naming."""
    import onnx
    from onnx import helper

    try:
        model, weights = read_model(src)
        nodes = {n["name"]: n for n in model["modelTopology"]["node"]}
        wanted = _wanted_outputs(model, nodes, outputs)
        order = _needed(nodes, wanted)
    except NotCovered as exc:
        raise NotCovered(f"{label}: {exc}") from exc
    except ConvertError as exc:
        raise ConvertError(f"{label}: {exc}") from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise ConvertError(f"{label}: {src.name} is not a TF.js graph model ({exc})") from exc
    missing = sorted({nodes[n]["op"] for n in order if nodes[n]["op"] not in OPS})
    if missing:
        raise NotCovered(
            f"{label} uses TF.js operations mlapi's converter does not cover: {', '.join(missing)}"
        )
    signature = model.get("signature") or {}
    renamed = {  # tf2onnx's names: a tensor the signature lists takes the signature's key
        v["name"]: key
        for part in ("inputs", "outputs")
        for key, v in signature.get(part, {}).items()
    }
    readers: dict[str, list[str]] = {}
    for name in order:
        for tensor in nodes[name].get("input", []):
            if not tensor.startswith("^"):
                readers.setdefault(_split_name(tensor)[0], []).append(nodes[name]["op"])
    conv = _Converter(label, dynamic_hw, readers)
    values: dict[str, list[Value]] = {}
    inputs: list[Any] = []
    symbols = iter(f"unk__{i}" for i in range(1 << 30))

    def dims(shape: Shape | None) -> list[int | str] | None:
        return None if shape is None else [next(symbols) if d is None else d for d in shape]

    for name in order:
        node = nodes[name]
        if node["op"] == "Const":
            if name not in weights:
                raise ConvertError(f"{label}: no weights for the constant {name!r}")
            array = weights[name]
            if array is None:
                raise NotCovered(f"{label}: the string constant {name!r}")
            values[name] = [constant(array.astype(_attr(node, "dtype") or array.dtype))]
            continue
        if node["op"] == "Placeholder":
            shape = _attr(node, "shape")
            dtype = _attr(node, "dtype") or np.dtype(np.float32)
            tf_shape = None if shape is None else tuple(None if d < 0 else d for d in shape)
            input_name = renamed.get(f"{name}:0", f"{name}:0")
            elem = helper.np_dtype_to_tensor_dtype(np.dtype(dtype))
            inputs.append(helper.make_tensor_value_info(input_name, elem, dims(tf_shape)))
            values[name] = [Value(input_name, np.dtype(dtype), tf_shape)]
            continue
        args = []
        for tensor in node.get("input", []):
            if tensor.startswith("^"):
                continue  # a control dependency: nothing to compute
            source, port = _split_name(tensor)
            if port >= len(values[source]):
                raise ConvertError(f"{label}: {name!r} reads output {port} of {source!r}")
            args.append(values[source][port])
        try:
            values[name] = _HANDLERS[node["op"]](conv, node, args)
        except NotCovered as exc:
            if str(exc).startswith(label):
                raise
            raise NotCovered(f"{label}: {node['op']} {name!r}: {exc}") from exc
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            raise ConvertError(f"{label}: {node['op']} {name!r}: {exc}") from exc

    g = conv.g
    try:
        results = [values[s][p] for s, p in map(_split_name, wanted)]
    except IndexError as exc:
        raise ConvertError(f"{label}: an output names a port its node does not have") from exc
    stored = [g.stored(value) for value in results]  # every Transpose first, then names
    produced = {out for n in g.nodes for out in n.output}
    renames: dict[str, str] = {}
    graph_outputs = []
    for tensor, value, name in zip(wanted, results, stored, strict=True):
        final = renamed.get(tensor, tensor)
        if name in produced and name not in renames:
            renames[name] = final
        else:  # an input, a constant, or a tensor already given to another output
            g.nodes.append(helper.make_node("Identity", [name], [final], name=f"#out{final}"))
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(value.dtype))
        graph_outputs.append(helper.make_tensor_value_info(final, elem, dims(value.shape)))
    _rename(g.nodes, renames)
    graph = helper.make_graph(g.nodes, "main", inputs, graph_outputs, g.initialisers)
    onnx_model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mlapi"
    )
    onnx_model.ir_version = 8
    try:
        onnx.checker.check_model(onnx_model)
    except onnx.checker.ValidationError as exc:
        raise ConvertError(f"{label}: the ONNX written is not valid: {exc}") from exc
    return onnx_model


def _rename(nodes: list[Any], renames: dict[str, str]) -> None:
    for node in nodes:
        for names in (node.input, node.output):
            for i, name in enumerate(names):
                if name in renames:
                    names[i] = renames[name]


OPS = frozenset(_HANDLERS) | {"Const", "Placeholder"}
OPERATIONS = tuple(sorted(OPS))


def operations(src: Path) -> dict[str, int]:
    """How many nodes of each operation model.json `src` has (Const and Placeholder too)."""
    model, _ = read_model(src)
    counts: dict[str, int] = {}
    for node in model["modelTopology"]["node"]:
        counts[node["op"]] = counts.get(node["op"], 0) + 1
    return dict(sorted(counts.items()))


def _main(paths: list[str]) -> int:
    """List each model's operations, marking those not covered (`*`); with no paths, the
    pulled catalog TF.js models. The exit status is 1 when any is not covered."""
    from mlapi.store import ModelCache, catalog

    if not paths:
        store = ModelCache()
        for entry in catalog.CATALOG:
            name = "model.json" if entry.format == "tfjs-js" else entry.files[0].basename
            if entry.converted and (store.models / entry.name / name).is_file():
                paths.append(str(store.models / entry.name / name))
    missing = False
    for path in paths:
        counts = operations(Path(path))
        print(f"{path}: {len(counts)} operations")
        for op, count in counts.items():
            missing |= op not in OPS
            print(f"  {'*' if op not in OPS else ' '} {op} {count}")
    return 1 if missing else 0


if __name__ == "__main__":
    import sys

    sys.exit(_main(sys.argv[1:]))
