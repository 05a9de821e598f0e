"""mlapi's own TF.js → ONNX converter: TensorFlow's semantics without TensorFlow.

The fast tier builds tiny model.json files here and checks the ONNX against numpy
references of TensorFlow's rules (SAME padding's odd pixel at the end, fused activations,
StridedSlice's masks, resize coordinates, quantised weights). The models tier checks each
catalog model against the answers tf2onnx's ONNX gave (tests/data/golden, see golden.py)
and that converting again gives the catalog's bytes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import golden
import numpy as np
import pytest

from mlapi.errors import ConvertError, MlapiError, NotCovered
from mlapi.onnx_sessions import make_session
from mlapi.store import ModelCache, catalog, convert, tfjs_onnx
from mlapi.store.catalog import ModelEntry

# -- tiny models ------------------------------------------------------------------------------
Node = dict[str, Any]
TF_TYPES = {"float32": "DT_FLOAT", "int32": "DT_INT32", "int64": "DT_INT64"}


def attr(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"b": value}
    if isinstance(value, int):
        return {"i": str(value)}
    if isinstance(value, float):
        return {"f": value}
    if isinstance(value, str) and value.startswith("DT_"):
        return {"type": value}
    if isinstance(value, str):
        return {"s": base64.b64encode(value.encode()).decode()}
    if value and isinstance(value[0], str):
        return {"list": {"s": [base64.b64encode(v.encode()).decode() for v in value]}}
    return {"list": {"i": [str(v) for v in value]}}


def op(name: str, kind: str, inputs: list[str], **attrs: Any) -> Node:
    return {
        "name": name,
        "op": kind,
        "input": inputs,
        "attr": {"T": {"type": "DT_FLOAT"}, **{k: attr(v) for k, v in attrs.items()}},
    }


def placeholder(shape: list[int], name: str = "x") -> Node:
    dims = [{"size": str(d)} for d in shape]
    return {
        "name": name,
        "op": "Placeholder",
        "attr": {"dtype": {"type": "DT_FLOAT"}, "shape": {"shape": {"dim": dims}}},
    }


def write_model(
    folder: Path,
    nodes: list[Node],
    consts: dict[str, np.ndarray],
    encodings: dict[str, str] | None = None,
) -> Path:
    """model.json and one weights file, as the TF.js converter writes them; `encodings`
    stores a weight as float16 or uint8 (with TF.js's scale and min)."""
    folder.mkdir(parents=True, exist_ok=True)
    specs, blobs = [], []
    graph = list(nodes)
    for name, array in consts.items():
        dtype = str(array.dtype)
        spec: dict[str, Any] = {"name": name, "shape": list(array.shape), "dtype": dtype}
        encoding = (encodings or {}).get(name)
        if encoding == "float16":
            spec["quantization"] = {"dtype": "float16", "original_dtype": "float32"}
            blobs.append(array.astype("<f2").tobytes())
        elif encoding == "uint8":
            low, high = float(array.min()), float(array.max())
            scale = (high - low) / 255
            spec["quantization"] = {"dtype": "uint8", "min": low, "scale": scale}
            blobs.append(np.round((array - low) / scale).astype(np.uint8).tobytes())
        else:
            blobs.append(array.astype(array.dtype.newbyteorder("<")).tobytes())
        specs.append(spec)
        graph.append({"name": name, "op": "Const", "attr": {"dtype": {"type": TF_TYPES[dtype]}}})
    (folder / "weights.bin").write_bytes(b"".join(blobs))
    model = {
        "format": "graph-model",
        "modelTopology": {"node": graph},
        "weightsManifest": [{"paths": ["weights.bin"], "weights": specs}],
    }
    (folder / "model.json").write_text(json.dumps(model))
    return folder / "model.json"


def run(model_json: Path, *inputs: np.ndarray, outputs: str = "") -> list[np.ndarray]:
    onnx_path = model_json.with_suffix(".onnx")
    tfjs_onnx.convert(model_json, onnx_path, outputs, label="tiny")
    session = make_session(onnx_path)
    feed = {i.name: x for i, x in zip(session.get_inputs(), inputs, strict=True)}
    return [np.asarray(v) for v in session.run(None, feed)]


def rng_array(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


# -- numpy references of TensorFlow's rules ----------------------------------------------------
def same_pads(size: int, k: int, s: int, d: int = 1) -> tuple[int, int]:
    """TensorFlow's SAME: out = ceil(size / s); the odd pixel of padding goes at the end."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return total // 2, total - total // 2


def conv_reference(
    x: np.ndarray, w: np.ndarray, stride: int, padding: str, depthwise: bool = False
) -> np.ndarray:
    """NHWC convolution (w: [kh, kw, in, out], or [kh, kw, in, multiplier] depthwise)."""
    kh, kw = w.shape[:2]
    if padding == "SAME":
        (t, b), (lft, r) = same_pads(x.shape[1], kh, stride), same_pads(x.shape[2], kw, stride)
        x = np.pad(x, [(0, 0), (t, b), (lft, r), (0, 0)])
    oh, ow = (x.shape[1] - kh) // stride + 1, (x.shape[2] - kw) // stride + 1
    channels = w.shape[2] * w.shape[3] if depthwise else w.shape[3]
    out = np.zeros((x.shape[0], oh, ow, channels), np.float64)
    for i in range(oh):
        for j in range(ow):
            patch = x[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            if depthwise:
                out[:, i, j, :] = np.einsum("nhwc,hwcm->ncm", patch, w).reshape(x.shape[0], -1)
            else:
                out[:, i, j, :] = np.einsum("nhwc,hwco->no", patch, w)
    return out


def pool_reference(x: np.ndarray, k: int, stride: int, kind: str) -> np.ndarray:
    """SAME pooling: a max ignores the padding, an average counts only real pixels."""
    (t, b), (lft, r) = same_pads(x.shape[1], k, stride), same_pads(x.shape[2], k, stride)
    fill = -np.inf if kind == "max" else np.nan
    padded = np.pad(x.astype(np.float64), [(0, 0), (t, b), (lft, r), (0, 0)], constant_values=fill)
    oh, ow = -(-x.shape[1] // stride), -(-x.shape[2] // stride)
    out = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for i in range(oh):
        for j in range(ow):
            patch = padded[:, i * stride : i * stride + k, j * stride : j * stride + k, :]
            reduce = np.max if kind == "max" else np.nanmean
            out[:, i, j, :] = reduce(patch, axis=(1, 2))
    return out


def resize_reference(x: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """tf.raw_ops.ResizeBilinear: align_corners, half_pixel_centers, or neither."""

    def weights(out: int, inp: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        i = np.arange(out, dtype=np.float64)
        if mode == "align_corners":
            src = i * ((inp - 1) / (out - 1) if out > 1 else 0)
        elif mode == "half_pixel":
            src = (i + 0.5) * (inp / out) - 0.5
        else:
            src = i * (inp / out)
        low = np.floor(src)
        lerp = src - low
        lo = np.clip(low, 0, inp - 1).astype(int)
        hi = np.clip(np.ceil(src), 0, inp - 1).astype(int)
        return lo, hi, lerp

    ylo, yhi, ly = weights(size[0], x.shape[1])
    xlo, xhi, lx = weights(size[1], x.shape[2])
    top = (
        x[:, ylo][:, :, xlo] * (1 - lx)[None, None, :, None]
        + x[:, ylo][:, :, xhi] * lx[None, None, :, None]
    )
    bottom = (
        x[:, yhi][:, :, xlo] * (1 - lx)[None, None, :, None]
        + x[:, yhi][:, :, xhi] * lx[None, None, :, None]
    )
    return np.asarray(top * (1 - ly)[None, :, None, None] + bottom * ly[None, :, None, None])


# -- the fast tier ---------------------------------------------------------------------------
@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize(("height", "width"), [(7, 5), (8, 6), (9, 9)])
@pytest.mark.parametrize(("stride", "padding"), [(1, "SAME"), (2, "SAME"), (2, "VALID")])
def test_convolutions_pad_as_tensorflow_does(
    tmp_path: Path, depthwise: bool, height: int, width: int, stride: int, padding: str
) -> None:
    x = rng_array((2, height, width, 3), 1)
    w = rng_array((3, 3, 3, 2 if depthwise else 4), 2)
    kind = "DepthwiseConv2dNative" if depthwise else "Conv2D"
    nodes = [
        placeholder([-1, height, width, 3]),
        op("y", kind, ["x", "w"], strides=[1, stride, stride, 1], padding=padding),
    ]
    (got,) = run(write_model(tmp_path, nodes, {"w": w}), x)
    expected = conv_reference(x, w, stride, padding, depthwise)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["MaxPool", "AvgPool"])
def test_pools_with_same_padding_count_only_real_pixels(tmp_path: Path, kind: str) -> None:
    x = rng_array((1, 7, 6, 2), 3)
    nodes = [
        placeholder([1, 7, 6, 2]),
        op("y", kind, ["x"], ksize=[1, 3, 3, 1], strides=[1, 2, 2, 1], padding="SAME"),
    ]
    (got,) = run(write_model(tmp_path, nodes, {}), x)
    expected = pool_reference(x, 3, 2, "max" if kind == "MaxPool" else "avg")
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


ACTIVATIONS = {
    "": lambda v, a: v,
    "Relu": lambda v, a: np.maximum(v, 0),
    "Relu6": lambda v, a: np.clip(v, 0, 6),
    "Elu": lambda v, a: np.where(v > 0, v, np.exp(v) - 1),
    "Sigmoid": lambda v, a: 1 / (1 + np.exp(-v)),
    "Tanh": lambda v, a: np.tanh(v),
    "LeakyRelu": lambda v, a: np.where(v > 0, v, 0.3 * v),
    "Prelu": lambda v, a: np.where(v > 0, v, a * v),
}


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
@pytest.mark.parametrize("kind", ["_FusedConv2D", "FusedDepthwiseConv2dNative", "_FusedMatMul"])
def test_fused_operations_add_the_bias_then_activate(
    tmp_path: Path, activation: str, kind: str
) -> None:
    channels = 4
    matmul = kind == "_FusedMatMul"
    x = 4 * rng_array((2, channels) if matmul else (2, 3, 3, channels), 4)
    if matmul:
        w = rng_array((channels, channels), 5)
    else:
        w = rng_array((1, 1, channels, 4 if kind == "_FusedConv2D" else 1), 5)
    bias = rng_array((channels,), 6)
    alpha = np.abs(rng_array((channels,), 7))
    fused = ["BiasAdd", activation] if activation else ["BiasAdd"]
    args = ["x", "w", "bias", "alpha"] if activation == "Prelu" else ["x", "w", "bias"]
    extra: dict[str, Any] = {"fused_ops": fused, "num_args": len(args) - 2}
    if activation == "LeakyRelu":
        extra["leakyrelu_alpha"] = 0.3
    if not matmul:
        extra |= {"strides": [1, 1, 1, 1], "padding": "VALID"}
    consts = {"w": w, "bias": bias, "alpha": alpha}
    shape = list(x.shape)
    shape[0] = -1
    nodes = [placeholder(shape), op("y", kind, args, **extra)]
    (got,) = run(write_model(tmp_path, nodes, consts), x)
    if matmul:
        linear = x @ w
    elif kind == "_FusedConv2D":
        linear = conv_reference(x, w, 1, "VALID")
    else:
        linear = conv_reference(x, w, 1, "VALID", depthwise=True)
    expected = ACTIVATIONS[activation](linear + bias, alpha)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


SLICES: list[tuple[dict[str, int], list[int], list[int], list[int], Any]] = [
    # masks, begin, end, strides, the same slice in numpy
    ({}, [0, 1], [1, 3], [1, 1], np.s_[0:1, 1:3]),
    ({"begin_mask": 0b10, "end_mask": 0b01}, [1, 2], [0, 4], [1, 1], np.s_[1:, :4]),
    ({}, [-1, -1], [-5, -6], [-1, -2], np.s_[-1:-5:-1, -1:-6:-2]),
    ({"begin_mask": 0b11, "end_mask": 0b11}, [0, 0], [0, 0], [-1, -1], np.s_[::-1, ::-1]),
    ({"shrink_axis_mask": 0b1}, [-1, 0], [0, 5], [1, 2], np.s_[-1, 0:5:2]),
    ({"shrink_axis_mask": 0b10}, [0, 2], [3, 0], [1, 1], np.s_[0:3, 2]),
    ({"new_axis_mask": 0b10}, [1, 0, 0], [3, 0, 2], [1, 1, 1], np.s_[1:3, None, 0:2]),
    ({"ellipsis_mask": 0b1}, [0, 1], [0, 3], [1, 1], np.s_[..., 1:3]),
    ({"ellipsis_mask": 0b10, "shrink_axis_mask": 0b1}, [2, 0], [3, 0], [1, 1], np.s_[2, ...]),
    ({"ellipsis_mask": 0b1, "new_axis_mask": 0b10}, [0, 0], [0, 0], [1, 1], np.s_[..., None]),
]


@pytest.mark.parametrize(("masks", "begin", "end", "strides", "expected"), SLICES)
def test_strided_slice_follows_tensorflow_masks(
    tmp_path: Path,
    masks: dict[str, int],
    begin: list[int],
    end: list[int],
    strides: list[int],
    expected: Any,
) -> None:
    x = rng_array((4, 6, 5), 8)
    consts = {
        "begin": np.array(begin, np.int32),
        "end": np.array(end, np.int32),
        "strides": np.array(strides, np.int32),
    }
    nodes = [
        placeholder([-1, 6, 5]),
        op("y", "StridedSlice", ["x", "begin", "end", "strides"], **masks),
    ]
    (got,) = run(write_model(tmp_path, nodes, consts), x)
    np.testing.assert_array_equal(got, x[expected])


@pytest.mark.parametrize("mode", ["asymmetric", "align_corners", "half_pixel"])
def test_resize_bilinear_samples_where_tensorflow_does(tmp_path: Path, mode: str) -> None:
    x = rng_array((1, 5, 4, 2), 9)
    flags = {"align_corners": mode == "align_corners", "half_pixel_centers": mode == "half_pixel"}
    nodes = [
        placeholder([1, 5, 4, 2]),
        op("y", "ResizeBilinear", ["x", "size"], **flags),
    ]
    for size in ((10, 8), (3, 7)):
        folder = tmp_path / f"{size[0]}x{size[1]}"
        model = write_model(folder, nodes, {"size": np.array(size, np.int32)})
        (got,) = run(model, x)
        np.testing.assert_allclose(got, resize_reference(x, size, mode), rtol=1e-5, atol=1e-5)


def test_quantised_weights_are_read_as_tfjs_reads_them(tmp_path: Path) -> None:
    x = rng_array((1, 8), 10)
    w = rng_array((8, 3), 11)
    nodes = [
        placeholder([1, 8]),
        op("h", "MatMul", ["x", "w16"]),
        op("y", "MatMul", ["h", "w8"]),
    ]
    w8 = rng_array((3, 2), 12)
    encodings = {"w16": "float16", "w8": "uint8"}
    (got,) = run(write_model(tmp_path, nodes, {"w16": w, "w8": w8}, encodings), x)
    low, scale = float(w8.min()), (float(w8.max()) - float(w8.min())) / 255
    dequantised = np.round((w8 - low) / scale).astype(np.uint8).astype(np.float32) * scale + low
    expected = (x @ w.astype(np.float16).astype(np.float32)) @ dequantised
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_nhwc_layouts_meet_at_reshape_shape_and_concat(tmp_path: Path) -> None:
    """A convolution's NCHW result read by TF-order operations: a dynamic-batch Reshape
    (Shape, StridedSlice, Pack), a Transpose, a ConcatV2, a Mean and a SplitV."""
    x = rng_array((2, 4, 4, 3), 13)
    w = rng_array((3, 3, 3, 4), 14)
    consts = {
        "w": w,
        "b": np.array([0], np.int32),
        "e": np.array([1], np.int32),
        "s": np.array([1], np.int32),
        "minus_one": np.array(-1, np.int32),
        "four": np.array(4, np.int32),
        "perm": np.array([0, 3, 1, 2], np.int32),
        "axis": np.array(1, np.int32),
        "axes": np.array([1, 2], np.int32),
        "sizes": np.array([1, -1], np.int32),
        "last": np.array(-1, np.int32),
        "pads": np.array([[0, 0], [1, 0], [0, 2], [0, 1]], np.int32),
    }
    nodes = [
        placeholder([-1, 4, 4, 3]),
        op("c", "Conv2D", ["x", "w"], strides=[1, 2, 2, 1], padding="SAME"),
        op("p", "Pad", ["c", "pads"]),
        op("shape", "Shape", ["c"], out_type="DT_INT32"),
        op("n", "StridedSlice", ["shape", "b", "e", "s"], shrink_axis_mask=1),
        op("target", "Pack", ["n", "minus_one", "four"], axis=0),
        op("flat", "Reshape", ["c", "target"]),
        op("t", "Transpose", ["c", "perm"]),
        op("cat", "ConcatV2", ["c", "c", "last"]),
        op("mean", "Mean", ["cat", "axes"]),
        op("split", "SplitV", ["mean", "sizes", "axis"], num_split=2),
    ]
    model = write_model(tmp_path, nodes, consts)
    got = run(model, x, outputs="p,flat,t,cat,split:1")
    conv = conv_reference(x, w, 2, "SAME")
    pads = consts["pads"]
    expected = [
        np.pad(conv, pads),
        conv.reshape(2, -1, 4),
        conv.transpose(0, 3, 1, 2),
        np.concatenate([conv, conv], axis=-1),
        np.concatenate([conv, conv], axis=-1).mean(axis=(1, 2))[:, 1:],
    ]
    for found, wanted in zip(got, expected, strict=True):
        np.testing.assert_allclose(found, wanted, rtol=1e-5, atol=1e-5)


def test_the_same_model_gives_the_same_bytes(tmp_path: Path) -> None:
    nodes = [
        placeholder([-1, 5, 5, 3]),
        op("c", "_FusedConv2D", ["x", "w", "bias"], fused_ops=["BiasAdd", "Relu"], num_args=1),
    ]
    nodes[1]["attr"] |= {"strides": attr([1, 2, 2, 1]), "padding": attr("SAME")}
    consts = {"w": rng_array((3, 3, 3, 8), 15), "bias": rng_array((8,), 16)}
    model = write_model(tmp_path, nodes, consts)
    tfjs_onnx.convert(model, tmp_path / "a.onnx")
    tfjs_onnx.convert(model, tmp_path / "b.onnx")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def not_covered_model(folder: Path) -> Path:
    nodes = [placeholder([1, 4]), op("y", "Erf", ["x"]), op("z", "Relu", ["y"])]
    return write_model(folder, nodes, {})


def test_an_operation_not_covered_is_named_with_the_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = not_covered_model(tmp_path / "tiny")
    with pytest.raises(NotCovered, match=r"my-net uses TF\.js operations .*: Erf$"):
        tfjs_onnx.convert(model, tmp_path / "out.onnx", label="my-net")
    assert issubclass(NotCovered, ConvertError)
    # Without the import extra the error says what installs it; nothing is left behind.
    monkeypatch.setattr(convert, "tf2onnx_available", lambda: False)
    with pytest.raises(ConvertError) as caught:
        convert.to_onnx(model, tmp_path / "out.onnx", label="my-net")
    message = caught.value.message
    assert "my-net" in message and "Erf" in message
    assert "pip install 'tensorflow-cpu>=2.16,<3' 'tf2onnx>=1.16,<2'" in message
    assert not (tmp_path / "out.onnx").exists()
    store = ModelCache(tmp_path / "cache")
    with pytest.raises(MlapiError, match=r"mine uses TF\.js operations .*: Erf"):
        store.import_file(model, "mine")
    assert not (store.models / "mine").exists()


def test_a_covered_model_is_imported_without_tensorflow(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(convert, "tf2onnx_available", lambda: False)
    nodes = [placeholder([-1, 3]), op("y", "Sigmoid", ["x"])]
    store = ModelCache(tmp_path / "cache")
    folder = store.import_file(write_model(tmp_path / "tiny", nodes, {}), "mine")
    (got,) = make_session(folder / "model.onnx").run(None, {"x:0": np.zeros((2, 3), np.float32)})
    np.testing.assert_allclose(got, 0.5)
    assert store.verify("mine") == []


# -- the models tier: the catalog's models against tf2onnx's answers ---------------------------
TFJS_MODELS = [e.name for e in catalog.CATALOG if e.default and e.converted]


def test_the_catalog_golden_answers_cover_every_converted_default_model() -> None:
    assert sorted(TFJS_MODELS) == sorted(golden.CASES)


def largest_differences(got: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """The largest absolute difference, and the largest relative to the output's scale."""
    diff = float(np.abs(got.astype(np.float64) - expected).max())
    return diff, diff / max(float(np.abs(expected).max()), 1e-12)


@pytest.mark.parametrize("name", TFJS_MODELS)
def test_converted_models_answer_as_tf2onnx_did(store: ModelCache, name: str) -> None:
    model = store.artifact(name)
    for case, expected in zip(golden.CASES[name], golden.load(name), strict=True):
        got = golden.run(model, case)
        assert got.keys() == expected.keys()
        for output, value in expected.items():
            assert got[output].shape == value.shape, output
            absolute, relative = largest_differences(got[output], value)
            in_unit_range = value.min() >= 0 and value.max() <= 1
            assert (absolute if in_unit_range else relative) <= 1e-4, (name, output)


def test_a_free_batch_answers_each_image_as_alone(store: ModelCache) -> None:
    case = golden.CASES["blazeface-full"][0]
    one = golden.pattern(case)
    other = golden.pattern(golden.Case(case.shape, case.low, case.high, 99))
    session = make_session(store.artifact("blazeface-full"))
    name = session.get_inputs()[0].name
    both = session.run(None, {name: np.concatenate([one, other])})
    alone = session.run(None, {name: other})
    for pair, single in zip(both, alone, strict=True):
        np.testing.assert_allclose(pair[1:], single, rtol=1e-5, atol=1e-5)


def test_converting_again_gives_the_catalog_bytes(store: ModelCache, tmp_path: Path) -> None:
    for name in TFJS_MODELS:
        entry = catalog.find(name)
        assert isinstance(entry, ModelEntry)
        src = store.model_dir(name) / (
            "model.json" if entry.format == "tfjs-js" else entry.files[0].basename
        )  # unpacked from the JavaScript at pull time
        dst = tmp_path / f"{name}.onnx"
        outputs, dynamic = entry.extra.get("outputs", ""), bool(entry.extra.get("dynamic_hw"))
        tfjs_onnx.convert(src, dst, outputs, dynamic, name)
        assert hashlib.sha256(dst.read_bytes()).hexdigest() == entry.artifact_sha256, name
