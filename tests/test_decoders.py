"""Decoders checked on tiny ONNX graphs built here, run by the real onnxruntime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from mlapi.config import RuntimeConfig
from mlapi.detectors.blazeface import BlazeFace, BlazeFaceOptions
from mlapi.detectors.nanodet import BINS, NanoDet, NanoDetOptions
from mlapi.engine import Engine, Runtime
from mlapi.errors import MlapiError
from mlapi.images import Image
from mlapi.store import ModelCache


def constant_graph(
    path: Path, input_name: str, input_shape: list[Any], outputs: dict[str, np.ndarray]
) -> Path:
    """An ONNX model whose outputs are the given constants, whatever the input."""
    nodes, infos = [], []
    for name, value in outputs.items():
        nodes.append(
            helper.make_node(
                "Constant", [], [name], value=numpy_helper.from_array(value.astype(np.float32))
            )
        )
        infos.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, input_shape)],
        infos,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    return Runtime(ModelCache(tmp_path / "cache"), RuntimeConfig())


def test_nanodet_head_decodes_to_the_encoded_box(tmp_path: Path, runtime: Runtime) -> None:
    # One anchor at stride 16, cell (col 10, row 5) → centre (168, 88); class 16 (dog).
    outs = {}
    for k, stride in enumerate((8, 16, 32)):
        cells = (416 // stride) ** 2
        cls = np.zeros((1, cells, 80))
        reg = np.full((1, cells, 4 * BINS), -20.0)
        reg[..., 0::BINS] = 20.0  # every side at distance 0 for the other anchors
        if stride == 16:
            cell = 5 * 26 + 10
            cls[0, cell, 16] = 0.9
            sides = [2, 3, 4, 5]  # bins → distances 32, 48, 64, 80 px
            reg[0, cell] = -20.0
            for s, b in enumerate(sides):
                reg[0, cell, s * BINS + b] = 20.0
        outs[f"cls{k}"], outs[f"reg{k}"] = cls, reg
    constant_graph(tmp_path / "nd.onnx", "x", [1, 3, 416, 416], outs)
    runtime.store.import_file(tmp_path / "nd.onnx", "tiny-nanodet")

    class TinyNanoDet(NanoDet):
        models = ("tiny-nanodet",)

    det = TinyNanoDet(runtime)
    det.load()
    # An 832×832 image: model pixels ×2 in the original.
    image = Image.from_array(np.zeros((832, 832, 3), np.uint8))
    found = det.detect(image, NanoDetOptions(size=416, flip=False), {})
    assert [(d.label, round(d.confidence, 3)) for d in found] == [("dog", 0.9)]
    assert found[0].box == ((168 - 32) * 2, (88 - 48) * 2, (168 + 64) * 2, (88 + 80) * 2)


def test_blazeface_head_decodes_box_and_keypoints(tmp_path: Path, runtime: Runtime) -> None:
    raw = np.zeros((1, 2304, 17))
    raw[0, :, 0] = -10.0
    cell = 20 * 48 + 30  # row 20, col 30 → anchor centre (122, 82) at stride 4
    raw[0, cell, :5] = [3.0, 2.0, -2.0, 40.0, 50.0]
    raw[0, cell, 5:17] = np.arange(12)
    constant_graph(
        tmp_path / "bf.onnx", "input", [1, 192, 192, 3], {"Identity:0": raw, "Identity_1:0": raw}
    )
    runtime.store.import_file(tmp_path / "bf.onnx", "tiny-blazeface")

    class TinyBlazeFace(BlazeFace):
        models = ("tiny-blazeface",)

    det = TinyBlazeFace(runtime)
    det.load()
    image = Image.from_array(np.zeros((384, 384, 3), np.uint8))  # model pixels ×2
    (face,) = det.detect(image, BlazeFaceOptions(), {})
    assert face.confidence == pytest.approx(1 / (1 + np.exp(-3.0)), abs=1e-4)
    cx, cy = 122 + 2, 82 - 2
    assert face.box == ((cx - 20) * 2, (cy - 25) * 2, (cx + 20) * 2, (cy + 25) * 2)
    assert face.keypoints[0] == ((122 + 0) * 2, (82 + 1) * 2)
    assert face.keypoints[5] == ((122 + 10) * 2, (82 + 11) * 2)


# -- imported object detectors (`mlapi models import x.onnx --labels FILE`) -----------------
LABELS = ["cat", "hat", "bat"]
# One box of class "hat" centred at (320, 200) in 640×640 model pixels, 100×80.
CX, CY, W, H = 320.0, 200.0, 100.0, 80.0


def layout_output(layout: str) -> np.ndarray:
    n, c = 6, len(LABELS)
    if layout == "yolo":  # [1, 4+C, N]
        out = np.zeros((1, 4 + c, n))
        out[0, :4, 2] = [CX, CY, W, H]
        out[0, 4 + 1, 2] = 0.9
        out[0, 4 + 0, 4] = 0.2  # a weak cat, under the threshold
        return out
    if layout in ("yolo-objectness", "yolox"):  # [1, N, 5+C]
        out = np.zeros((1, n, 5 + c))
        out[0, 3, :5] = [CX, CY, W, H, 0.95]
        out[0, 3, 5 + 1] = 0.95
        return out
    out = np.zeros((1, n, 4 + c))  # detr: fractions of the input
    out[0, 1, :4] = [CX / 640, CY / 640, W / 640, H / 640]
    out[0, 1, 4 + 1] = 0.9
    return out


@pytest.mark.parametrize("layout", ["yolo", "yolo-objectness", "yolox", "detr"])
def test_imported_detector_decodes_each_layout(tmp_path: Path, layout: str) -> None:
    model = constant_graph(
        tmp_path / "m.onnx", "images", [1, 3, 640, 640], {"out": layout_output(layout)}
    )
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(LABELS) + "\n")
    store = ModelCache(tmp_path / "cache")
    given = "yolox" if layout == "yolox" else None  # the one layout its shape cannot tell
    store.import_file(model, "mine", labels=labels, layout=given)
    manifest = store.manifest("mine")
    assert manifest is not None and manifest["detector"]["layout"] == layout
    with Engine(store) as engine:
        assert "mine" in engine.registry
        image = encode_png(np.zeros((1280, 1280, 3), np.uint8))  # model pixels ×2
        found = engine.detect(image, ["mine"]).detections
    assert [(d.label, d.model) for d in found] == [("hat", "mine")]
    assert found[0].box == ((CX - W / 2) * 2, (CY - H / 2) * 2, (CX + W / 2) * 2, (CY + H / 2) * 2)


def test_import_refuses_a_model_that_does_not_fit_its_labels(tmp_path: Path) -> None:
    model = constant_graph(
        tmp_path / "m.onnx", "images", [1, 3, 640, 640], {"out": layout_output("yolo")}
    )
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class{i}" for i in range(10)))
    store = ModelCache(tmp_path / "cache")
    with pytest.raises(MlapiError, match="fits no known layout for 10 labels"):
        store.import_file(model, "mine", labels=labels)
    assert not store.is_pulled("mine")


def encode_png(rgb: np.ndarray) -> bytes:
    import cv2

    return cv2.imencode(".png", rgb)[1].tobytes()
