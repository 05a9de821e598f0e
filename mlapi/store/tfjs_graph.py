"""The TF.js graph as the converter reads and writes it: tensors (`Value`), model.json
and its weights, node attributes, the ONNX graph being written, and shape arithmetic."""

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


def _fold(fn: Callable[..., np.ndarray], args: list[Value]) -> list[Value] | None:
    """`fn` computed here when every argument is a constant (None otherwise)."""
    if all(a.const is not None for a in args):
        return [constant(np.asarray(fn(*[a.const for a in args])))]
    return None
