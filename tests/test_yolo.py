"""The Darknet loader and YOLO decoding, on a tiny network generated here."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from mlapi.engine import Engine
from mlapi.images import encode_jpeg
from mlapi.store import ModelCache

CFG = """[net]
width=32
height=32
channels=3

[convolutional]
filters=255
size=1
stride=1
pad=0
activation=linear

[yolo]
mask=0,1,2
anchors=10,14, 23,27, 37,58
classes=80
num=3
"""
DOG = 16


def write_tiny_yolo(folder: Path) -> Path:
    """A 1×1 conv + YOLO head whose biases say 'a dog, centred in every cell'."""
    cfg = folder / "tiny-yolo.cfg"
    cfg.write_text(CFG)
    biases = np.zeros((3, 85), np.float32)
    biases[:, 4] = 10.0  # objectness
    biases[:, 5:] = -10.0
    biases[:, 5 + DOG] = 10.0
    weights = np.zeros(255 * 3, np.float32)
    with open(folder / "tiny-yolo.weights", "wb") as fh:
        fh.write(struct.pack("<iiiq", 0, 2, 0, 0))  # major, minor, revision, images seen
        fh.write(biases.tobytes() + weights.tobytes())
    return cfg


def test_tiny_darknet_network_loads_and_decodes(tmp_path: Path) -> None:
    store = ModelCache(tmp_path / "cache")
    store.import_file(write_tiny_yolo(tmp_path), "tiny-yolo")
    assert store.verify("tiny-yolo") == []
    with Engine(store) as engine:
        image = encode_jpeg(np.full((64, 96, 3), 128, np.uint8))
        result = engine.detect(image, ["yolo"], {"yolo": {"model": "tiny-yolo", "max_count": "5"}})
    assert 1 <= len(result.detections) <= 5
    for d in result.detections:
        assert d.label == "dog" and d.confidence > 0.99
        x1, y1, x2, y2 = d.box
        assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 64
