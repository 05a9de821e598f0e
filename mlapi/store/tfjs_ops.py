"""Each TF.js operation the converter covers, as ONNX nodes with TensorFlow's semantics
(registered by name with `_op`; see mlapi.store.tfjs_onnx for layouts and folding)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from mlapi.store.tfjs_graph import (
    INT64_MAX,
    INT64_MIN,
    NCHW,
    Value,
    _attr,
    _broadcast,
    _drop,
    _fold,
    _Graph,
    _int,
    _out_size,
    _str,
    _window,
    constant,
)

if TYPE_CHECKING:
    from mlapi.store.tfjs_onnx import _Converter

Handler = Callable[["_Converter", dict[str, Any], list[Value]], list[Value]]
_HANDLERS: dict[str, Handler] = {}


def _op(*names: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        for name in names:
            _HANDLERS[name] = fn
        return fn

    return register


# -- operations -----------------------------------------------------------------------------
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
