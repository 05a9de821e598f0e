"""dlib's face-recognition ResNet, read from its own file and written as ONNX.

dlib runs this network in about 0.1 s a face on a 2-core CPU and holds the GIL while it
does; onnxruntime runs the same weights several times faster. The file is dlib's binary
serialisation (dlib/serialize.h, dnn/core.h, dnn/layers.h). Layers appear input first; the
network is dlib's `anet_type` (dnn_face_recognition_ex.cpp): a 7×7 stem, residual blocks
(`ares`, and `ares_down` whose shortcut is a 2×2 average pool), a global average pool and a
128-d fully connected layer without bias. Shapes are fixed (150×150 chips), so where a
shortcut and its block differ in size the smaller is zero-padded at the end, as dlib's
`add_prev` does. Only numpy and onnx are needed: no TensorFlow, no C++ build.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mlapi.errors import DlibFormatError

CHIP = 150  # dlib's input_rgb_image_sized<150>
RECIPE_VERSION = 1  # bump when the ONNX this writes changes

# A layer's serialised version string, which starts each layer's details.
_MARKER = re.compile(
    rb"\x01[\x04-\x20](input_rgb_image_sized|con_[456]|affine_2?|relu_2?|add_prev_|"
    rb"avg_pool_2|max_pool_2|fc_[23]|loss_metric_[123])"
)


_WINDOW = ("rows", "cols", "stride_y", "stride_x", "pad_y", "pad_x")


@dataclass
class Layer:
    kind: str  # con, affine, relu, add_prev, avg_pool, max_pool, fc, input
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    ints: dict[str, int] = field(default_factory=dict)


class _Reader:
    """dlib's serialisation primitives over a bytes buffer."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def integer(self) -> int:
        control = self.data[self.pos]
        count = control & 0x0F
        value = int.from_bytes(self.data[self.pos + 1 : self.pos + 1 + count], "little")
        self.pos += 1 + count
        return -value if control & 0x80 else value

    def real(self) -> float:
        mantissa, exponent = self.integer(), self.integer()
        if exponent >= 32000:  # dlib's codes for inf, -inf and nan
            raise DlibFormatError("a non-finite number in the network file")
        return float(mantissa * 2.0**exponent)

    def string(self) -> str:
        size = self.integer()
        text = self.data[self.pos : self.pos + size].decode("ascii")
        self.pos += size
        return text

    def tensor(self) -> np.ndarray:
        if self.integer() != 2:
            raise DlibFormatError("unknown tensor version")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        array = np.frombuffer(self.data, "<f4", count, self.pos).reshape(shape)
        self.pos += 4 * count
        return array.astype(np.float32)

    def window(self) -> dict[str, int]:
        """A convolution's or pool's window: size, stride and padding, rows first."""
        return {key: self.integer() for key in _WINDOW}

    def alias(self) -> tuple[int, int, int, int]:
        if self.integer() != 1:
            raise DlibFormatError("unknown alias_tensor version")
        n, k, r, c = (self.integer() for _ in range(4))
        return n, k, r, c


def read_layers(path: Path) -> list[Layer]:
    """Every layer with parameters or structure, input first."""
    data = path.read_bytes()
    r = _Reader(data)
    layers: list[Layer] = []
    while match := _MARKER.search(data, r.pos):
        if match.group(0)[1] != len(match.group(1)):
            r.pos = match.start() + 1
            continue
        r.pos = match.end()
        version = match.group(1).decode()
        kind = version.rstrip("_0123456789")
        layer = Layer(kind)
        if kind == "input_rgb_image_sized":
            layer.kind = "input"
            mean = [r.real() for _ in range(3)]
            layer.weights["mean"] = np.array(mean, np.float32)
        elif kind == "con":
            params = r.tensor()
            filters = r.integer()
            layer.ints = r.window()
            shape, _ = r.alias(), r.alias()
            weights = params.reshape(-1)
            size = int(np.prod(shape))
            layer.weights["w"] = weights[:size].reshape(shape)
            layer.weights["b"] = weights[size : size + filters]
            if shape[0] != filters or shape[2:] != (layer.ints["rows"], layer.ints["cols"]):
                raise DlibFormatError("convolution shapes disagree")
        elif kind == "affine":
            params = r.tensor().reshape(-1)
            gamma = r.alias()
            r.alias()
            mode = r.integer()
            half = int(np.prod(gamma))
            if mode != 0 or params.size != 2 * half:  # 0: per channel (CONV_MODE)
                raise DlibFormatError("only per-channel affine layers are supported")
            layer.weights = {"gamma": params[:half], "beta": params[half:]}
        elif kind in ("avg_pool", "max_pool"):
            layer.ints = r.window()
        elif kind == "fc":
            outputs, inputs = r.integer(), r.integer()
            params = r.tensor().reshape(-1)
            layer.weights["w"] = params[: inputs * outputs].reshape(inputs, outputs)
            if r.alias()[0] != inputs:
                raise DlibFormatError("fully connected shapes disagree")
            r.alias()
            if r.integer() != 1:  # FC_NO_BIAS
                raise DlibFormatError("only fc_no_bias is supported")
        elif kind == "loss_metric":
            continue
        layers.append(layer)
    return layers


class _Graph:
    """Builds the ONNX graph while tracking each value's static shape (C, H, W)."""

    def __init__(self) -> None:
        from onnx import helper

        self.helper = helper
        self.nodes: list[Any] = []
        self.inits: list[Any] = []
        self.shapes: dict[str, tuple[int, int, int]] = {}

    def name(self, prefix: str) -> str:
        return f"{prefix}_{len(self.nodes)}"

    def const(self, prefix: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        name = f"{prefix}_{len(self.inits)}"
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], shape: tuple[int, int, int], **attrs: Any) -> str:
        out = self.name(op.lower())
        self.nodes.append(self.helper.make_node(op, inputs, [out], **attrs))
        self.shapes[out] = shape
        return out

    @staticmethod
    def _out(size: int, window: int, stride: int, pad: int) -> int:
        return 1 + (size + 2 * pad - window) // stride

    def conv(self, x: str, layer: Layer, affine: Layer | None) -> str:
        w, b = layer.weights["w"], layer.weights["b"]
        if affine is not None:  # fold the per-channel scale and shift into the convolution
            gamma, beta = affine.weights["gamma"], affine.weights["beta"]
            w = w * gamma[:, None, None, None]
            b = b * gamma + beta
        i = layer.ints
        _, h, wd = self.shapes[x]
        shape = (
            w.shape[0],
            self._out(h, i["rows"], i["stride_y"], i["pad_y"]),
            self._out(wd, i["cols"], i["stride_x"], i["pad_x"]),
        )
        return self.node(
            "Conv",
            [x, self.const("w", w), self.const("b", b)],
            shape,
            kernel_shape=[i["rows"], i["cols"]],
            strides=[i["stride_y"], i["stride_x"]],
            pads=[i["pad_y"], i["pad_x"], i["pad_y"], i["pad_x"]],
        )

    def pool(self, x: str, layer: Layer) -> str:
        i = layer.ints
        c, h, w = self.shapes[x]
        if layer.kind == "avg_pool" and i["rows"] == 0:  # avg_pool_everything
            return self.node("GlobalAveragePool", [x], (c, 1, 1))
        if layer.kind == "avg_pool" and (i["pad_y"] or i["pad_x"]):
            raise DlibFormatError("padded average pools are not supported")
        shape = (
            c,
            self._out(h, i["rows"], i["stride_y"], i["pad_y"]),
            self._out(w, i["cols"], i["stride_x"], i["pad_x"]),
        )
        op = "MaxPool" if layer.kind == "max_pool" else "AveragePool"
        return self.node(
            op,
            [x],
            shape,
            kernel_shape=[i["rows"], i["cols"]],
            strides=[i["stride_y"], i["stride_x"]],
            pads=[i["pad_y"], i["pad_x"], i["pad_y"], i["pad_x"]],
        )

    def pad_to(self, x: str, shape: tuple[int, int, int]) -> str:
        have = self.shapes[x]
        if have == shape:
            return x
        ends = [0] + [want - got for want, got in zip(shape, have, strict=True)]
        pads = self.const("pads", np.array([0, 0, 0, 0, *ends], np.int64))
        return self.node("Pad", [x, pads], shape)

    def add(self, a: str, b: str) -> str:
        shape = tuple(max(p, q) for p, q in zip(self.shapes[a], self.shapes[b], strict=True))
        full = (shape[0], shape[1], shape[2])
        return self.node("Add", [self.pad_to(a, full), self.pad_to(b, full)], full)


def to_onnx(weights: Path, dst: Path) -> None:
    """Write dlib's face ResNet as ONNX: input `chips` N×150×150×3 RGB uint8-valued floats,
    output `descriptor` N×128, the same vectors dlib's compute_face_descriptor gives."""
    import onnx
    from onnx import TensorProto, helper

    layers = read_layers(weights)
    kinds = [layer.kind for layer in layers]
    if not kinds or kinds[0] != "input" or kinds[-1] != "fc":
        raise DlibFormatError(f"{weights.name} is not a dlib metric-learning network")
    g = _Graph()
    # Chips arrive NHWC as 0..255 RGB; dlib feeds (pixel - channel mean) / 256, NCHW.
    mean = g.const("mean", layers[0].weights["mean"].reshape(1, 1, 1, 3))
    scale = g.const("scale", np.array(1 / 256, np.float32))
    x = g.node("Sub", ["chips", mean], (3, CHIP, CHIP))
    x = g.node("Mul", [x, scale], (3, CHIP, CHIP))
    x = g.node("Transpose", [x], (3, CHIP, CHIP), perm=[0, 3, 1, 2])
    block_input = x
    pending: Layer | None = None  # a pool on the shortcut path, waiting for its add
    i = 1
    while i < len(layers):
        layer = layers[i]
        nxt = layers[i + 1] if i + 1 < len(layers) else None
        if layer.kind == "con":
            affine = nxt if nxt is not None and nxt.kind == "affine" else None
            x = g.conv(x, layer, affine)
            i += 2 if affine else 1
            continue
        if layer.kind == "relu":
            x = g.node("Relu", [x], g.shapes[x])
            if layers[i - 1].kind == "add_prev":
                block_input = x  # the next residual block starts here
        elif layer.kind == "max_pool":
            x = g.pool(x, layer)
            block_input = x
        elif layer.kind == "avg_pool" and nxt is not None and nxt.kind == "add_prev":
            pending = layer  # ares_down: the shortcut is the block input, pooled 2×2
        elif layer.kind == "avg_pool":
            x = g.pool(x, layer)
        elif layer.kind == "add_prev":
            shortcut = g.pool(block_input, pending) if pending else block_input
            pending = None
            x = g.add(x, shortcut)
        elif layer.kind == "fc":
            flat = g.node("Flatten", [x], (int(np.prod(g.shapes[x])), 1, 1), axis=1)
            out = g.const("fc", layer.weights["w"])
            g.nodes.append(helper.make_node("MatMul", [flat, out], ["descriptor"]))
        else:
            raise DlibFormatError(f"unexpected layer {layer.kind!r} in {weights.name}")
        i += 1
    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("chips", TensorProto.FLOAT, ["N", CHIP, CHIP, 3])],
        [helper.make_tensor_value_info("descriptor", TensorProto.FLOAT, ["N", 128])],
        g.inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    model.producer_name = "mlapi"
    onnx.checker.check_model(model)
    dst.write_bytes(model.SerializeToString(deterministic=True))
