"""Give a converted ONNX graph the same bytes on every run and every machine.

tf2onnx names the nodes and constants it makes from a global counter whose order varies
from run to run, so two conversions of one model differ in names (and so in sha256) while
computing the same thing. Here nodes are put in a canonical topological order (ties broken
by what the node is, never by its name) and every internal name is derived from that order.
mlapi's own TF.js converter (`tfjs_onnx`) writes through here too, so both converters'
files share one form. Needs the `onnx` package (a dependency of mlapi).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any


def canonicalise(src: Path, dst: Path, dynamic_hw: bool = False) -> None:
    """Write `src` to `dst` in canonical form; `dynamic_hw`: make the first input's and the
    outputs' spatial sizes symbolic so a fully convolutional net runs at any input size."""
    import onnx

    try:
        model = canonical_model(onnx.load(str(src)), dynamic_hw)
    except ValueError as exc:
        raise ValueError(f"{src.name}: {exc}") from exc
    tmp = dst.with_name(dst.name + ".part")
    onnx.save(model, str(tmp))
    tmp.replace(dst)


def canonical_model(model: Any, dynamic_hw: bool = False) -> Any:
    """The ONNX ModelProto `model` in canonical form (changed in place, and returned)."""
    import onnx

    graph = model.graph
    for node in graph.node:
        if any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for a in node.attribute
        ):
            raise ValueError("graphs with subgraphs are not canonicalised")
    _fuse_relu6(graph)
    if dynamic_hw:
        dims = graph.input[0].type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "height", "width"
        for output in graph.output:
            output.type.tensor_type.shape.dim[1].dim_param = "cells"

    symbols: dict[str, str] = {}  # tf2onnx numbers unknown sizes from its counter too
    for value in (*graph.input, *graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param.startswith("unk__"):
                dim.dim_param = symbols.setdefault(dim.dim_param, f"dim{len(symbols)}")

    keep = [i.name for i in graph.input] + [o.name for o in graph.output]
    names: dict[str, str] = {n: n for n in keep}
    names[""] = ""  # an omitted optional input
    initialisers = {i.name: i for i in graph.initializer}
    content = {name: _digest(init) for name, init in initialisers.items()}
    pending = list(graph.node)
    ordered: list[Any] = []
    used_initialisers: list[Any] = []

    def key(node: Any) -> tuple[str, bytes, tuple[str, ...]]:
        inputs = tuple(names.get(i) or "const:" + content[i] for i in node.input)
        attrs = b"".join(
            a.SerializeToString() for a in sorted(node.attribute, key=lambda a: a.name)
        )
        return node.op_type, attrs, inputs

    while pending:
        ready = [n for n in pending if all(i in names or i in initialisers for i in n.input)]
        if not ready:
            raise ValueError("the graph has a cycle or a dangling input")
        node = min(ready, key=key)
        pending.remove(node)
        index = len(ordered)
        for name in node.input:
            if name not in names:  # an initialiser, named by where it is first used
                names[name] = f"const{len(used_initialisers)}"
                used_initialisers.append(initialisers[name])
        renamed_inputs = [names[i] for i in node.input]
        for j, out in enumerate(node.output):
            if out and out not in names:
                names[out] = f"t{index}_{j}"
        node.name = f"n{index}_{node.op_type}"
        del node.input[:]
        node.input.extend(renamed_inputs)
        outputs = [names.get(o, o) for o in node.output]
        del node.output[:]
        node.output.extend(outputs)
        ordered.append(node)

    for init in used_initialisers:
        init.name = names[init.name]
    del graph.node[:]
    graph.node.extend(ordered)
    del graph.initializer[:]
    graph.initializer.extend(used_initialisers)
    del graph.value_info[:]  # intermediate shapes: onnxruntime infers them again
    graph.name = "main"
    graph.doc_string = ""  # tf2onnx writes its command line (temporary paths) here
    model.doc_string = ""
    return model


def _fuse_relu6(graph: Any) -> None:
    """Relu → Min(6) → Max(0), TF.js's ReLU6, becomes one Clip(0, 6): the same values, and
    onnxruntime then fuses it into the convolution before it and keeps the blocked layout
    between convolutions (FaceRes: 40 → 31 ms for two faces at one thread)."""
    import numpy as np
    from onnx import helper, numpy_helper

    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    def only_user(value: str, op: str, bound: float) -> Any:
        users = consumers.get(value, [])
        if value in outputs or len(users) != 1 or users[0].op_type != op:
            return None
        other = [constants[i] for i in users[0].input if i != value and i in constants]
        same = len(users[0].input) == 2 and len(other) == 1 and other[0].size == 1
        return users[0] if same and float(other[0].reshape(-1)[0]) == bound else None

    fused: dict[int, Any] = {}
    dropped: set[int] = set()
    for node in graph.node:
        low = only_user(node.output[0], "Min", 6.0) if node.op_type == "Relu" else None
        high = only_user(low.output[0], "Max", 0.0) if low is not None else None
        if high is not None:
            clip = helper.make_node("Clip", [node.input[0], "relu6:0", "relu6:6"], [high.output[0]])
            fused[id(node)] = clip
            dropped |= {id(low), id(high)}
    if not fused:
        return
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(0.0, np.float32), "relu6:0"),
            numpy_helper.from_array(np.array(6.0, np.float32), "relu6:6"),
        ]
    )
    nodes = [fused.get(id(n), n) for n in graph.node if id(n) not in dropped]
    del graph.node[:]
    graph.node.extend(nodes)


def _digest(tensor: Any) -> str:
    copy = type(tensor)()
    copy.CopyFrom(tensor)
    copy.name = ""
    return hashlib.sha256(copy.SerializeToString()).hexdigest()[:16]
