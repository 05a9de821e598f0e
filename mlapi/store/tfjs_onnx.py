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

import base64
import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlapi.errors import ConvertError, NotCovered

OPSET = 17
INT64_MAX = np.iinfo(np.int64).max
INT64_MIN = np.iinfo(np.int64).min
NCHW = (0, 3, 1, 2)  # the stored order of an NHWC tensor kept as NCHW

_DTYPES = {
    "DT_FLOAT": np.float32,
    "DT_HALF": np.float16,
    "DT_DOUBLE": np.float64,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_INT16": np.int16,
    "DT_INT8": np.int8,
    "DT_UINT8": np.uint8,
    "DT_BOOL": np.bool_,
}
_DTYPE_NUMBERS = {1: "DT_FLOAT", 2: "DT_DOUBLE", 3: "DT_INT32", 4: "DT_UINT8", 5: "DT_INT16"}
_DTYPE_NUMBERS |= {6: "DT_INT8", 9: "DT_INT64", 10: "DT_BOOL", 19: "DT_HALF"}
_WEIGHT_DTYPES = {"float32", "float16", "int32", "int64", "uint8", "int8", "int16", "bool"}


@dataclass
class Value:
    """A tensor of the TF graph as it exists in the ONNX graph being written.

    `shape` is TensorFlow's (None for an unknown size; None for the whole shape when even
    the rank is unknown). `const` holds the value when it is known here. `perm`: stored axis
    i holds TensorFlow's axis perm[i] (None: stored in TensorFlow's order)."""

    name: str
    dtype: Any
    shape: tuple[int | None, ...] | None
    const: np.ndarray | None = None
    perm: tuple[int, ...] | None = None

    @property
    def dims(self) -> tuple[int | None, ...]:
        if self.shape is None:
            raise NotCovered("a tensor of unknown rank")
        return self.shape

    @property
    def rank(self) -> int:
        return len(self.dims)

    @property
    def layout(self) -> tuple[int, ...]:
        return self.perm if self.perm is not None else tuple(range(self.rank))


def constant(array: np.ndarray) -> Value:
    return Value("", array.dtype, tuple(int(d) for d in array.shape), array)


# -- reading model.json and its weights -----------------------------------------------------
def _read(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConvertError(f"cannot read {path.name}: {exc.strerror}") from exc
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def read_model(src: Path) -> tuple[dict[str, Any], dict[str, np.ndarray | None]]:
    """The model.json document and its weights by name (dequantised as TF.js does)."""
    try:
        model = json.loads(_read(src))
        topology = model["modelTopology"]
        manifest = model["weightsManifest"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConvertError(f"{src.name} is not a TF.js model.json ({exc})") from exc
    if not isinstance(topology, dict) or "node" not in topology:  # tf2onnx cannot either
        raise ConvertError(
            f"{src.name} is a TF.js layers model; only graph models can be converted (make "
            "one with tensorflowjs_converter --output_format tfjs_graph_model)"
        )
    if topology.get("library", {}).get("function"):
        raise NotCovered("functions (control flow) in the graph")
    weights: dict[str, np.ndarray | None] = {}
    for group in manifest:
        data = b"".join(_read(src.parent / p) for p in group["paths"])
        offset = 0
        for spec in group["weights"]:
            array, size = _weight(spec, data, offset)
            weights[spec["name"]] = array
            offset += size
        if offset != len(data):
            raise ConvertError(f"{src.name}: the weight files hold {len(data)} bytes, not {offset}")
    return model, weights


def _weight(spec: dict[str, Any], data: bytes, offset: int) -> tuple[np.ndarray | None, int]:
    """A weight's value (None for one this converter cannot hold) and its size in bytes."""
    dtype, shape = spec["dtype"], [int(d) for d in spec["shape"]]
    count = int(np.prod(shape, dtype=np.int64))
    if dtype == "string":  # each string: a 4-byte length, then its bytes
        end = offset
        for _ in range(count):
            end += 4 + int.from_bytes(data[end : end + 4], "little")
        return None, end - offset
    if dtype not in _WEIGHT_DTYPES:
        raise NotCovered(f"{dtype} weights")
    quantization = spec.get("quantization")
    stored = np.dtype(quantization["dtype"] if quantization else dtype).newbyteorder("<")
    if offset + count * stored.itemsize > len(data):
        raise ConvertError(f"weight {spec['name']} runs past the end of the weight files")
    array = np.frombuffer(data, stored, count, offset)
    size = array.nbytes
    if quantization and "scale" in quantization:  # uint8 / uint16: min + scale × q
        if np.dtype(dtype).kind != "f":
            raise NotCovered(f"quantised {dtype} weights")
        array = array.astype(dtype) * quantization["scale"] + quantization["min"]
    return array.astype(dtype).reshape(shape), size


# -- attributes ---------------------------------------------------------------------------
def _attr(node: dict[str, Any], name: str) -> Any:
    value = node.get("attr", {}).get(name)
    if not value:
        return None
    kind, content = next(iter(value.items()))
    if kind == "list":
        for sub in ("i", "f", "s", "b", "type"):
            if content.get(sub):
                return [_scalar(sub, v) for v in content[sub]]
        return []
    return _scalar(kind, content)


def _scalar(kind: str, content: Any) -> Any:
    if kind == "i":
        return int(content)
    if kind == "f":
        return float(content)
    if kind == "b":
        return bool(content)
    if kind == "s":  # base64 text, or a list of byte values in older models
        raw = bytes(content) if isinstance(content, list) else base64.b64decode(content)
        return raw.decode()
    if kind == "type":
        name = _DTYPE_NUMBERS.get(content, "?") if isinstance(content, int) else content
        if name not in _DTYPES:
            raise NotCovered(f"the data type {content}")
        return np.dtype(_DTYPES[name])
    if kind == "shape":
        if content.get("unknownRank"):
            return None
        return [int(d.get("size", -1)) for d in content.get("dim", [])]
    return content


def _int(node: dict[str, Any], name: str, default: int) -> int:
    found = _attr(node, name)
    return default if found is None else int(found)


def _str(node: dict[str, Any], name: str, default: str) -> str:
    found = _attr(node, name)
    return default if found is None else str(found)


# -- the graph being written ----------------------------------------------------------------
class _Graph:
    def __init__(self, dynamic_hw: bool) -> None:
        from onnx import helper

        self.helper = helper
        self.dynamic_hw = dynamic_hw
        self.nodes: list[Any] = []
        self.initialisers: list[Any] = []
        self.constants: dict[tuple[str, tuple[int, ...], bytes], str] = {}
        self.transposed: dict[tuple[str, tuple[int, ...]], str] = {}

    def node(self, op: str, inputs: list[str], outputs: int = 1, **attrs: Any) -> list[str]:
        index = len(self.nodes)
        names = [f"#{index}.{i}" for i in range(outputs)]  # '#' is in no TF name
        self.nodes.append(self.helper.make_node(op, inputs, names, name=f"{op}{index}", **attrs))
        return names

    def one(self, op: str, inputs: list[str], **attrs: Any) -> str:
        return self.node(op, inputs, 1, **attrs)[0]

    def const(self, array: np.ndarray) -> str:
        """An initialiser holding `array` (one per distinct value)."""
        from onnx import numpy_helper

        array = np.ascontiguousarray(array)
        key = (array.dtype.str, tuple(array.shape), array.tobytes())
        if key not in self.constants:
            name = f"#c{len(self.initialisers)}"
            self.initialisers.append(numpy_helper.from_array(array, name))
            self.constants[key] = name
        return self.constants[key]

    def ints(self, values: list[int] | tuple[int, ...]) -> str:
        return self.const(np.array(values, np.int64))

    def stored(self, value: Value, layout: tuple[int, ...] | None = None) -> str:
        """The ONNX name of `value` with its axes in `layout` (TensorFlow's order by default)."""
        want = layout if layout is not None else tuple(range(value.rank))
        if value.const is not None:
            same = want == tuple(range(len(want)))
            return self.const(value.const if same else np.transpose(value.const, want))
        have = value.layout
        if have == want:
            return value.name
        order = tuple(have.index(axis) for axis in want)
        key = (value.name, order)
        if key not in self.transposed:
            self.transposed[key] = self.one("Transpose", [value.name], perm=list(order))
        return self.transposed[key]


# -- shapes ---------------------------------------------------------------------------------
Shape = tuple[int | None, ...]


def _broadcast(a: Shape | None, b: Shape | None) -> Shape | None:
    if a is None or b is None:
        return None
    size = max(len(a), len(b))
    a = (1,) * (size - len(a)) + a
    b = (1,) * (size - len(b)) + b
    out: list[int | None] = []
    for p, q in zip(a, b, strict=True):
        if p == 1:
            out.append(q)
        elif q == 1 or p == q:
            out.append(p)
        else:
            out.append(p if q is None else q if p is None else max(p, q))
    return tuple(out)


def _drop(layout: tuple[int, ...], axes: set[int]) -> tuple[int, ...] | None:
    """The layout left when TensorFlow's `axes` are removed (None: TensorFlow's order)."""
    kept = [a for a in layout if a not in axes]
    ranks = sorted(kept)
    out = tuple(ranks.index(a) for a in kept)
    return None if out == tuple(range(len(out))) else out


def _window(size: int | None, k: int, s: int, d: int, same: bool) -> tuple[int, int] | None:
    """TensorFlow's SAME padding (the odd pixel at the end) or VALID (none)."""
    if not same:
        return 0, 0
    total_if_exact = (k - 1) * d  # stride 1: the same for any size
    if s == 1:
        return total_if_exact // 2, total_if_exact - total_if_exact // 2
    if size is None:
        return None
    out = -(-size // s)
    total = max((out - 1) * s + total_if_exact + 1 - size, 0)
    return total // 2, total - total // 2


def _out_size(size: int | None, k: int, s: int, d: int, pads: tuple[int, int] | None) -> int | None:
    if size is None:
        return None
    if pads is None:  # SAME with a size known only when running
        return -(-size // s)
    return (size + pads[0] + pads[1] - ((k - 1) * d + 1)) // s + 1


# -- the converter ------------------------------------------------------------------------
Handler = Callable[["_Converter", dict[str, Any], list[Value]], list[Value]]
_HANDLERS: dict[str, Handler] = {}


def _op(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            _HANDLERS[name] = fn
        return fn

    return register


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


# -- operations -----------------------------------------------------------------------------
def _fold(fn: Callable[..., np.ndarray], args: list[Value]) -> list[Value] | None:
    if all(a.const is not None for a in args):
        return [constant(np.asarray(fn(*[a.const for a in args])))]
    return None


@_op("Identity", "StopGradient", "Snapshot")
def _identity(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    return [args[0]]


_BINARY: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "Add": ("Add", np.add),
    "AddV2": ("Add", np.add),
    "Sub": ("Sub", np.subtract),
    "Mul": ("Mul", np.multiply),
    "Maximum": ("Max", np.maximum),
    "Minimum": ("Min", np.minimum),
}


@_op(*_BINARY)
def _binary(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    onnx_op, fn = _BINARY[node["op"]]
    a, b = args
    folded = _fold(lambda p, q: fn(p, q).astype(p.dtype), args)
    if folded:
        return folded
    shape = _broadcast(a.shape, b.shape)
    rank = len(shape) if shape is not None else None
    # Work in the layout of a non-constant input that has the output's rank.
    layout = None
    for v in (a, b):
        if v.const is None and v.perm is not None and v.rank == rank:
            layout = v.perm
            break
    names = []
    for v in (a, b):
        if v.const is not None:
            like = Value("", v.dtype, shape, perm=layout)
            names.append(c.operand(v, like))
        elif layout is not None and v.rank == rank:
            names.append(c.g.stored(v, layout))
        elif layout is not None:  # a lower-rank tensor against a permuted one
            raise c.fail(node, "broadcasting a lower-rank tensor against an NHWC one")
        else:
            names.append(c.g.stored(v))
    return [Value(c.g.one(onnx_op, names), a.dtype, shape, perm=layout)]


@_op("Relu", "Sigmoid", "Relu6", "LeakyRelu")
def _unary(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    x = args[0]
    if x.const is not None:
        raise c.fail(node, "on a constant")
    if node["op"] == "LeakyRelu":
        alpha = _attr(node, "alpha")
        name = c.g.one("LeakyRelu", [x.name], alpha=0.2 if alpha is None else float(alpha))
        return [Value(name, x.dtype, x.shape, perm=x.perm)]
    return [c.activate(node, node["op"], x, [])]


@_op("Softmax")
def _softmax(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    x = args[0]
    axis = x.layout.index(x.rank - 1)
    name = c.g.one("Softmax", [c.g.stored(x, x.layout)], axis=axis)
    return [Value(name, x.dtype, x.shape, perm=x.perm)]


def _nchw_hw(node: dict[str, Any], c: _Converter, name: str) -> tuple[int, int]:
    values = _attr(node, name) or [1, 1, 1, 1]
    if len(values) != 4 or values[0] != 1 or values[3] != 1:
        raise c.fail(node, f"{name} {values} (only height and width may differ from 1)")
    return int(values[1]), int(values[2])


def _padding(
    c: _Converter,
    node: dict[str, Any],
    x: Value,
    kernel: tuple[int, int],
    strides: tuple[int, int],
    dilations: tuple[int, int],
) -> tuple[dict[str, Any], tuple[int | None, int | None]]:
    """The ONNX padding attributes of a convolution or pool, and its output height and width."""
    mode = _str(node, "padding", "VALID")
    height, width = x.dims[1], x.dims[2]
    if mode == "EXPLICIT":
        ex = _attr(node, "explicit_paddings") or [0] * 8
        pads: list[tuple[int, int] | None] = [(ex[2], ex[3]), (ex[4], ex[5])]
    elif mode in ("SAME", "VALID"):
        pads = [
            _window(size, k, s, d, mode == "SAME")
            for size, k, s, d in zip((height, width), kernel, strides, dilations, strict=True)
        ]
        if c.g.dynamic_hw and mode == "SAME" and max(strides) > 1:
            pads = [None, None]  # the padding depends on the size: let onnxruntime work it out
    else:
        raise c.fail(node, f"padding {mode}")
    out = tuple(
        _out_size(size, k, s, d, p)
        for size, k, s, d, p in zip((height, width), kernel, strides, dilations, pads, strict=True)
    )
    if any(p is None for p in pads):
        return {"auto_pad": "SAME_UPPER"}, (out[0], out[1])
    (top, bottom), (left, right) = pads  # type: ignore[misc]
    return {"pads": [top, left, bottom, right]}, (out[0], out[1])


@_op("Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative")
def _conv(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    x, w, extra = args[0], args[1], args[2:]
    if _str(node, "data_format", "NHWC") != "NHWC":
        raise c.fail(node, f"data_format {_str(node, 'data_format', '')}")
    if x.rank != 4:
        raise c.fail(node, f"an input of rank {x.rank}")
    filt = c.need_const(node, w, "filter").astype(np.float32)
    kh, kw, cin, cout = filt.shape
    depthwise = "Depthwise" in node["op"]
    if depthwise:  # [kh, kw, C, M] → [C·M, 1, kh, kw], one group per input channel
        weight = filt.transpose(2, 3, 0, 1).reshape(cin * cout, 1, kh, kw)
        group, channels = cin, cin * cout
    else:  # [kh, kw, in, out] → [out, in, kh, kw]
        weight = filt.transpose(3, 2, 0, 1)
        channels = cout
        have = x.dims[3]
        group = 1 if have is None or have == cin else have // cin
    strides = _nchw_hw(node, c, "strides")
    dilations = _nchw_hw(node, c, "dilations")
    pad_attrs, (oh, ow) = _padding(c, node, x, (kh, kw), strides, dilations)
    fused = node["op"].startswith(("_Fused", "Fused"))
    bias, activation = c.fused(node, x, extra) if fused else (None, "")
    inputs = [c.g.stored(x, NCHW), c.g.const(np.ascontiguousarray(weight))]
    if bias is not None:
        inputs.append(bias)
    name = c.g.one(
        "Conv",
        inputs,
        kernel_shape=[kh, kw],
        strides=list(strides),
        dilations=list(dilations),
        group=group,
        **pad_attrs,
    )
    out = Value(name, np.dtype(np.float32), (x.dims[0], oh, ow, channels), perm=NCHW)
    if activation:
        out = c.activate(node, activation, out, extra[1:])
    return [out]


@_op("MaxPool", "AvgPool")
def _pool(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    x = args[0]
    if _str(node, "data_format", "NHWC") != "NHWC" or x.rank != 4:
        raise c.fail(node, "only NHWC pools are supported")
    kernel = _nchw_hw(node, c, "ksize")
    strides = _nchw_hw(node, c, "strides")
    pad_attrs, (oh, ow) = _padding(c, node, x, kernel, strides, (1, 1))
    op = "MaxPool" if node["op"] == "MaxPool" else "AveragePool"
    # AveragePool leaves the padding out of each average (count_include_pad 0), as TF does.
    name = c.g.one(
        op, [c.g.stored(x, NCHW)], kernel_shape=list(kernel), strides=list(strides), **pad_attrs
    )
    return [Value(name, x.dtype, (x.dims[0], oh, ow, x.dims[3]), perm=NCHW)]


@_op("_FusedMatMul")
def _fused_matmul(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    out = _matmul(c, node, args[:2])[0]
    bias, activation = c.fused(node, out, args[2:])
    if bias is not None:
        out = Value(c.g.one("Add", [out.name, bias]), out.dtype, out.shape)
    if activation:
        out = c.activate(node, activation, out, args[3:])
    return [out]


@_op("MatMul")
def _matmul(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    a, b = args
    if a.rank != 2 or b.rank != 2:
        raise c.fail(node, "only two-dimensional MatMul is supported")
    names, shapes = [], []
    for v, flag in ((a, "transpose_a"), (b, "transpose_b")):
        shape = v.shape or (None, None)
        if _attr(node, flag):
            shape = shape[::-1]
            if v.const is not None:
                names.append(c.g.const(np.ascontiguousarray(v.const.T)))
            else:
                names.append(c.g.stored(v, (1, 0)))
        else:
            names.append(c.g.stored(v))
        shapes.append(shape)
    return [Value(c.g.one("MatMul", names), a.dtype, (shapes[0][0], shapes[1][1]))]


@_op("Mean")
def _mean(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    x, axes_value = args
    rank = x.rank
    axes = sorted({int(a) % rank for a in np.atleast_1d(c.need_const(node, axes_value, "axes"))})
    keep = bool(_attr(node, "keep_dims"))
    if x.const is not None:
        return [constant(np.mean(x.const, axis=tuple(axes), keepdims=keep).astype(x.dtype))]
    layout = x.layout
    stored_axes = sorted(layout.index(a) for a in axes)
    if rank == 4 and stored_axes == [2, 3]:  # over height and width, kept NCHW: as tf2onnx
        name = c.g.one("GlobalAveragePool", [x.name])
        if not keep:
            name = c.g.one("Squeeze", [name, c.g.ints(stored_axes)])
    else:
        name = c.g.one("ReduceMean", [x.name], axes=stored_axes, keepdims=int(keep))
    assert x.shape is not None
    if keep:
        shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
        return [Value(name, x.dtype, shape, perm=x.perm)]
    shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return [Value(name, x.dtype, shape, perm=_drop(layout, set(axes)))]


@_op("Pad", "PadV2")
def _pad(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    x, paddings = args[0], c.need_const(node, args[1], "padding").astype(np.int64)
    fill = args[2] if len(args) > 2 else constant(np.array(0, x.dtype))
    fill_value = c.need_const(node, fill, "fill value").astype(x.dtype).reshape(())
    if x.const is not None:
        return [constant(np.pad(x.const, paddings, constant_values=fill_value))]
    layout = x.layout
    if x.perm is None and x.rank == 4 and c.feeds_nchw(node):
        layout = NCHW  # pad after the Transpose, so onnxruntime folds the Pad into the Conv
    pads = [int(paddings[a][0]) for a in layout] + [int(paddings[a][1]) for a in layout]
    data = c.g.stored(x, layout)
    name = c.g.one("Pad", [data, c.g.ints(pads), c.g.const(fill_value)], mode="constant")
    assert x.shape is not None
    shape = tuple(None if d is None else d + int(paddings[i].sum()) for i, d in enumerate(x.shape))
    identity = layout == tuple(range(len(layout)))
    return [Value(name, x.dtype, shape, perm=None if identity else layout)]


@_op("ConcatV2")
def _concat(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    parts, axis_value = args[:-1], args[-1]
    rank = parts[0].rank
    axis = int(c.need_const(node, axis_value, "axis")) % rank
    if all(p.const is not None for p in parts):
        return [constant(np.concatenate([p.const for p in parts], axis=axis))]
    layout = next((p.perm for p in parts if p.const is None and p.perm is not None), None)
    full = layout or tuple(range(rank))
    names = [c.g.stored(p, full) for p in parts]
    name = c.g.one("Concat", names, axis=full.index(axis))
    sizes = [p.shape[axis] if p.shape else None for p in parts]
    shape = list(parts[0].shape or [None] * rank)
    shape[axis] = None if None in sizes else sum(s for s in sizes if s is not None)
    return [Value(name, parts[0].dtype, tuple(shape), perm=layout)]


@_op("SplitV")
def _split(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    x, sizes_value, axis_value = args
    rank = x.rank
    axis = int(c.need_const(node, axis_value, "axis")) % rank
    sizes = [int(s) for s in c.need_const(node, sizes_value, "split sizes")]
    assert x.shape is not None
    if -1 in sizes:
        total = x.shape[axis]
        if total is None:
            raise c.fail(node, "a split of -1 along an axis of unknown size")
        sizes[sizes.index(-1)] = total - sum(s for s in sizes if s != -1)
    if x.const is not None:
        return [constant(p) for p in np.split(x.const, np.cumsum(sizes)[:-1], axis=axis)]
    layout = x.layout
    names = c.g.node("Split", [x.name, c.g.ints(sizes)], len(sizes), axis=layout.index(axis))
    out = []
    for name, size in zip(names, sizes, strict=True):
        shape = list(x.shape)
        shape[axis] = size
        out.append(Value(name, x.dtype, tuple(shape), perm=x.perm))
    return out


@_op("Transpose")
def _transpose(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    x, perm_value = args
    perm = tuple(int(p) for p in c.need_const(node, perm_value, "permutation"))
    if x.const is not None:
        return [constant(np.transpose(x.const, perm))]
    inverse = tuple(int(i) for i in np.argsort(perm))
    layout = tuple(inverse[a] for a in x.layout)  # stored axes unchanged, renumbered
    assert x.shape is not None
    shape = tuple(x.shape[p] for p in perm)
    identity = layout == tuple(range(len(layout)))
    return [Value(x.name, x.dtype, shape, perm=None if identity else layout)]


@_op("Reshape")
def _reshape(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    x, target = args
    if x.const is not None and target.const is not None:
        return [constant(x.const.reshape([int(d) for d in target.const]))]
    if target.const is not None:
        dims = [int(d) for d in target.const.reshape(-1)]
        shape_name = c.g.ints(dims)
        shape: list[int | None] = [None if d < 0 else d for d in dims]
        known = x.shape is not None and None not in x.shape
        if known and dims.count(-1) == 1:
            total = int(np.prod(x.shape))  # type: ignore[arg-type]
            rest = int(np.prod([d for d in dims if d != -1]))
            shape[dims.index(-1)] = total // rest if rest else 0
        attrs = {"allowzero": 1} if 0 in dims else {}
    else:
        shape_name = c.g.stored(target)
        if np.dtype(target.dtype) != np.int64:
            shape_name = c.g.one("Cast", [shape_name], to=7)  # INT64
        count = target.shape[0] if target.shape else None
        shape = [None] * count if count is not None else []
        attrs = {}
        if count is None:
            raise c.fail(node, "a target shape of unknown length")
    name = c.g.one("Reshape", [_in_tf_order(c.g, x), shape_name], **attrs)
    return [Value(name, x.dtype, tuple(shape))]


def _in_tf_order(g: _Graph, x: Value) -> str:
    """`x` with its elements in TensorFlow's order, for a Reshape: a stored layout that
    moves only axes of size 1 (NCHW with one channel, say) already is."""
    if x.perm is not None and x.shape is not None:
        moved = [a for a in x.perm if x.shape[a] != 1]
        if moved == sorted(moved):
            return x.name
    return g.stored(x)


@_op("Squeeze")
def _squeeze(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    x = args[0]
    rank = x.rank
    assert x.shape is not None
    listed = _attr(node, "squeeze_dims") or _attr(node, "axis") or []
    axes = sorted({int(a) % rank for a in listed})
    if not axes:
        if None in x.shape:
            raise c.fail(node, "squeezing every axis of size 1 of a tensor of unknown shape")
        axes = [i for i, d in enumerate(x.shape) if d == 1]
    if x.const is not None:
        return [constant(np.squeeze(x.const, axis=tuple(axes)))]
    layout = x.layout
    name = c.g.one("Squeeze", [x.name, c.g.ints(sorted(layout.index(a) for a in axes))])
    shape = tuple(d for i, d in enumerate(x.shape) if i not in axes)
    return [Value(name, x.dtype, shape, perm=_drop(layout, set(axes)))]


@_op("Shape")
def _shape(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    x = args[0]
    dtype = _attr(node, "out_type") or np.dtype(np.int32)
    if x.shape is not None and None not in x.shape:
        return [constant(np.array(x.shape, dtype))]
    name = c.g.one("Shape", [x.name])
    if x.perm is not None:  # the stored shape, back in TensorFlow's order
        order = [x.perm.index(a) for a in range(x.rank)]
        name = c.g.one("Gather", [name, c.g.ints(order)], axis=0)
    if np.dtype(dtype) != np.int64:
        from onnx import helper

        name = c.g.one("Cast", [name], to=helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))
    return [Value(name, np.dtype(dtype), (x.rank,))]


@_op("Pack")
def _pack(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    rank = args[0].rank + 1
    axis = _int(node, "axis", 0) % rank
    if all(a.const is not None for a in args):
        return [constant(np.stack([a.const for a in args], axis=axis))]  # type: ignore[misc]
    axes = c.g.ints([axis])
    names = [
        c.g.const(np.expand_dims(a.const, axis))
        if a.const is not None
        else c.g.one("Unsqueeze", [c.g.stored(a), axes])
        for a in args
    ]
    shape = list(args[0].shape or [])
    shape.insert(axis, len(args))
    return [Value(c.g.one("Concat", names, axis=axis), args[0].dtype, tuple(shape))]


@_op("SparseToDense")
def _sparse_to_dense(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    indices, shape_value, values, default = (c.need_const(node, a, "input") for a in args)
    out = np.full([int(d) for d in np.atleast_1d(shape_value)], default, values.dtype)
    if indices.size:
        index = tuple(np.atleast_2d(indices.T)) if indices.ndim == 2 else (indices,)
        out[index] = values
    return [constant(out)]


@_op("StridedSlice")
def _strided_slice(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    x = args[0]
    begin, end, strides = ([int(v) for v in c.need_const(node, a, "bound")] for a in args[1:4])
    kinds = ("begin", "end", "ellipsis", "new_axis", "shrink_axis")
    masks = {m: _int(node, f"{m}_mask", 0) for m in kinds}
    rank = x.rank
    dims, layout = _slice_spec(rank, begin, end, strides, masks)
    if x.const is not None:
        index = tuple(int(d[1]) if d[0] == "index" else slice(d[1], d[2], d[3]) for d in dims)
        out = x.const[index]
        for position, kind in enumerate(layout):
            if kind is None:
                out = np.expand_dims(out, position)
        return [constant(np.asarray(out))]
    name = c.g.stored(x)
    starts, ends, axes, steps, shrunk = [], [], [], [], []
    shape: list[int | None] = []
    assert x.shape is not None
    for axis, d in enumerate(dims):
        if d[0] == "index":
            i = int(d[1])
            starts.append(i)
            ends.append(INT64_MAX if i == -1 else i + 1)
            axes.append(axis)
            steps.append(1)
            shrunk.append(axis)
            continue
        _, b, e, s = d
        if (b, e, s) != (None, None, 1):
            starts.append(b if b is not None else (0 if s > 0 else INT64_MAX))
            ends.append(e if e is not None else (INT64_MAX if s > 0 else INT64_MIN))
            axes.append(axis)
            steps.append(s)
        size = x.shape[axis]
        shape.append(None if size is None else len(range(*slice(b, e, s).indices(size))))
    if axes:
        name = c.g.one(
            "Slice", [name, c.g.ints(starts), c.g.ints(ends), c.g.ints(axes), c.g.ints(steps)]
        )
    if shrunk:
        name = c.g.one("Squeeze", [name, c.g.ints(shrunk)])
    new_axes = [p for p, kind in enumerate(layout) if kind is None]
    if new_axes:
        name = c.g.one("Unsqueeze", [name, c.g.ints(new_axes)])
        for p in new_axes:
            shape.insert(p, 1)
    return [Value(name, x.dtype, tuple(shape))]


def _slice_spec(
    rank: int, begin: list[int], end: list[int], strides: list[int], masks: dict[str, int]
) -> tuple[list[tuple[Any, ...]], list[int | None]]:
    """TensorFlow's StridedSlice spec made dense: per input axis ('index', i) or
    ('slice', begin|None, end|None, stride); and the output axes in order, each the input
    axis it comes from or None for a new axis of size 1."""
    count = len(begin)
    ellipsis = masks["ellipsis"]
    if not ellipsis:  # an implicit ellipsis at the end
        ellipsis = 1 << count
        count += 1
    after = 0  # new axes after the ellipsis
    seen = False
    for i in range(count):
        if seen and masks["new_axis"] & (1 << i):
            after += 1
        if ellipsis & (1 << i):
            seen = True
    dims: list[tuple[Any, ...]] = []
    layout: list[int | None] = []
    for i in range(count):
        bit = 1 << i
        if ellipsis & bit:
            real_after = count - i - 1 - after
            for _ in range(rank - len(dims) - real_after):
                layout.append(len(dims))
                dims.append(("slice", None, None, 1))
        elif masks["new_axis"] & bit:
            layout.append(None)
        elif masks["shrink_axis"] & bit:
            dims.append(("index", begin[i]))
        else:
            if strides[i] == 0:
                raise ValueError("a stride of 0")
            b = None if masks["begin"] & bit else begin[i]
            e = None if masks["end"] & bit else end[i]
            layout.append(len(dims))
            dims.append(("slice", b, e, strides[i]))
    if len(dims) != rank:
        raise ValueError(f"the slice covers {len(dims)} axes of {rank}")
    return dims, layout


@_op("ResizeBilinear", "ResizeNearestNeighbor")
def _resize(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    x, size = args
    if x.rank != 4:
        raise c.fail(node, f"an input of rank {x.rank}")
    bilinear = node["op"] == "ResizeBilinear"
    assert x.shape is not None
    n, h, w, ch = x.shape
    data = c.g.stored(x, NCHW)
    roi = c.g.const(np.array([], np.float32))
    new: tuple[int | None, int | None] = (None, None)
    if size.const is not None and h is not None and w is not None:
        nh, nw = (int(v) for v in size.const)
        # As tf2onnx does: scales from the sizes seen here, so a net whose height and width
        # are free resizes by the same factor at any size.
        scales = np.array([1.0, 1.0, nh / h, nw / w], np.float32)
        inputs = [data, roi, c.g.const(scales)]
        new = (nh, nw)
    else:
        head = c.g.one("Slice", [c.g.one("Shape", [data]), c.g.ints([0]), c.g.ints([2])])
        if size.const is not None:
            target = c.g.ints([int(v) for v in size.const])
        else:
            target = c.g.stored(size)
            if np.dtype(size.dtype) != np.int64:
                target = c.g.one("Cast", [target], to=7)  # INT64
        sizes = c.g.one("Concat", [head, target], axis=0)
        inputs = [data, roi, c.g.const(np.array([], np.float32)), sizes]
        if size.const is not None:
            new = (int(size.const[0]), int(size.const[1]))
    mode, nearest = "asymmetric", "floor"
    if _attr(node, "align_corners"):
        mode, nearest = "align_corners", "round_prefer_ceil"
    if _attr(node, "half_pixel_centers"):
        mode = "half_pixel" if bilinear else "tf_half_pixel_for_nn"
    name = c.g.one(
        "Resize",
        inputs,
        mode="linear" if bilinear else "nearest",
        nearest_mode=nearest,
        coordinate_transformation_mode=mode,
        exclude_outside=0,
    )
    return [Value(name, x.dtype, (n, new[0], new[1], ch), perm=NCHW)]


@_op("DepthToSpace")
def _depth_to_space(c: _Converter, node: dict[str, Any], args: list[Value]) -> list[Value]:
    x = args[0]
    if _str(node, "data_format", "NHWC") != "NHWC" or x.rank != 4:
        raise c.fail(node, "only NHWC DepthToSpace is supported")
    block = _int(node, "block_size", 2)
    # TF's channel order (row, column, channel) is ONNX's DCR mode.
    name = c.g.one("DepthToSpace", [c.g.stored(x, NCHW)], blocksize=block, mode="DCR")
    assert x.shape is not None
    n, h, w, ch = x.shape
    shape = (
        n,
        None if h is None else h * block,
        None if w is None else w * block,
        None if ch is None else ch // (block * block),
    )
    return [Value(name, x.dtype, shape, perm=NCHW)]


_NCHW_OPS = {"Conv2D", "_FusedConv2D", "DepthwiseConv2dNative", "FusedDepthwiseConv2dNative"}
_NCHW_OPS |= {"MaxPool", "AvgPool"}
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
