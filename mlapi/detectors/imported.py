"""Object detectors a user brings: `mlapi models import x.onnx --name N --labels FILE`.

The usual exports are read by the shape of their one output (C = number of labels):
    yolo             [1, 4+C, N]  YOLOv5u/v8/v11: cx, cy, w, h in input pixels, class scores
    yolo-objectness  [1, N, 5+C]  YOLOv5 / YOLOv7: cx, cy, w, h, objectness, class scores
    yolox            [1, N, 5+C]  as above, but fed BGR 0-255 (YOLOX's own preprocessing)
    detr             [1, N, 4+C]  DETR / RT-DETR: cx, cy, w, h as fractions, class scores
Inputs are letterboxed to the model's input size (640 when it is dynamic), RGB scaled to 0-1
(YOLOX: BGR 0-255), then per-class NMS; boxes come back in original pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from mlapi.detectors.base import Detector, Options, StagedDetector
from mlapi.detectors.common import letterbox, nms, to_original
from mlapi.errors import MlapiError
from mlapi.images import Image
from mlapi.result import Detection

LAYOUTS = ("yolo", "yolo-objectness", "yolox", "detr")
DEFAULT_SIZE = 640  # for models whose input size is dynamic
LABELS_FILE = "labels.txt"


@dataclass(frozen=True)
class ImportedOptions(Options):
    confidence: float = field(default=0.35, metadata={"min": 0.0, "max": 1.0})
    iou: float = field(default=0.5, metadata={"min": 0.0, "max": 1.0})
    max_count: int = field(default=100, metadata={"min": 1, "max": 1000})


def guess_layout(shape: list[Any], classes: int) -> str:
    """The layout an output of this shape has, or a clear error."""
    if len(shape) != 3:
        raise MlapiError(f"expected one output of 3 dimensions, got shape {shape}")
    _, rows, cols = shape
    if rows == 4 + classes:
        return "yolo"
    if cols == 5 + classes:
        return "yolo-objectness"
    if cols == 4 + classes:
        return "detr"
    raise MlapiError(
        f"an output of shape {shape} fits no known layout for {classes} labels "
        f"([1, 4+C, N], [1, N, 5+C] or [1, N, 4+C]); check the labels file or pass --layout"
    )


def decode(
    raw: np.ndarray, layout: str, classes: int, height: int, width: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One output (batch removed) → boxes x1y1x2y2 in input pixels, scores, class ids."""
    rows = raw.T if layout == "yolo" else raw
    if rows.shape[1] != (5 if layout in ("yolo-objectness", "yolox") else 4) + classes:
        raise MlapiError(f"the model's output has {rows.shape[1]} columns per box, not as imported")
    centre, size = rows[:, 0:2].astype(np.float32), rows[:, 2:4].astype(np.float32)
    if layout == "detr":
        scale = np.array([width, height], np.float32)
        centre, size = centre * scale, size * scale
    if layout in ("yolo-objectness", "yolox"):
        scores_all = rows[:, 5:] * rows[:, 4:5]
    else:
        scores_all = rows[:, 4:]
    ids = scores_all.argmax(1)
    scores = scores_all[np.arange(len(ids)), ids].astype(np.float32)
    boxes = np.column_stack([centre - size / 2, centre + size / 2])
    return boxes, scores, ids


class ImportedObjects(StagedDetector):
    """Base of the classes `imported_detectors` makes, one per imported model."""

    task = "objects"
    Options = ImportedOptions
    labels: ClassVar[tuple[str, ...]] = ()
    layout: ClassVar[str] = "yolo"

    def load(self) -> None:
        self.session, self.input_name = self.open_session()
        shape = self.session.get_inputs()[0].shape
        fixed = [d if isinstance(d, int) else DEFAULT_SIZE for d in shape[2:]]
        self.height, self.width = fixed if len(fixed) == 2 else (DEFAULT_SIZE, DEFAULT_SIZE)

    def preprocess(self, image: Image, options: ImportedOptions) -> tuple[np.ndarray, float]:
        side = max(self.height, self.width)
        canvas, factor = letterbox(image.pixels, side, pad=(114, 114, 114))
        canvas = canvas[: self.height, : self.width]
        if self.layout == "yolox":
            x = canvas[:, :, ::-1].astype(np.float32)  # BGR, 0-255
        else:
            x = canvas.astype(np.float32) / 255.0
        return np.ascontiguousarray(x.transpose(2, 0, 1))[None], factor

    def infer(self, tensor: np.ndarray) -> np.ndarray:
        out: np.ndarray = np.asarray(self.session.run(None, {self.input_name: tensor})[0])[0]
        return out

    def postprocess(
        self, raw: np.ndarray, factor: float, image: Image, options: ImportedOptions
    ) -> list[Detection]:
        boxes, scores, ids = decode(raw, self.layout, len(self.labels), self.height, self.width)
        wanted = scores >= options.confidence
        boxes, scores, ids = boxes[wanted], scores[wanted], ids[wanted]
        keep = nms(boxes, scores, ids, options.iou)[: options.max_count]
        return [
            Detection(
                self.labels[ids[i]],
                float(scores[i]),
                to_original(boxes[i] * factor, 1.0, image),
                self.name,
            )
            for i in keep
        ]


def imported_detectors(
    manifests: Mapping[str, Mapping[str, Any]], label_files: Mapping[str, str]
) -> dict[str, type[Detector]]:
    """A detector class for each imported model whose manifest describes one."""
    found: dict[str, type[Detector]] = {}
    for name, manifest in manifests.items():
        spec = manifest.get("detector")
        if not spec or spec.get("layout") not in LAYOUTS or name not in label_files:
            continue
        labels = tuple(ln.strip() for ln in label_files[name].splitlines() if ln.strip())
        found[name] = type(
            f"Imported[{name}]",
            (ImportedObjects,),
            {
                "name": name,
                "description": f"imported {spec['layout']} model, {len(labels)} labels",
                "models": (name,),
                "labels": labels,
                "layout": spec["layout"],
            },
        )
    return found
