"""Fixed inputs for the five converted TF.js models, and the answers to compare them with.

The answers in tests/data/golden/NAME.npz are what the ONNX files made by tensorflow +
tf2onnx 1.17 (the catalog's checksums before mlapi converted TF.js itself) gave through
onnxruntime for these inputs. They were made once, while that toolchain was installed:

    .venv/bin/python tests/golden.py DIR   # DIR holds NAME.onnx from the old conversion

The inputs come from integer arithmetic only (no random generator, no libm), so every
machine and every numpy makes the same bits.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FOLDER = Path(__file__).parent / "data" / "golden"


@dataclass(frozen=True)
class Case:
    shape: tuple[int, ...]
    low: float  # the input range the detector feeds the model
    high: float
    seed: int
    channel_axis: int = -1


# Sizes are kept small so the answers stay small; batch 2 where the batch is free, and
# NanoDet at two sizes other than the 416 it was exported at (its height and width are free).
CASES: dict[str, tuple[Case, ...]] = {
    "nanodet": (
        Case((1, 3, 128, 96), -2.0, 2.5, 1, channel_axis=1),
        Case((1, 3, 64, 160), -2.0, 2.5, 2, channel_axis=1),
    ),
    "blazeface-full": (Case((1, 192, 192, 3), -1.0, 1.0, 3),),
    "faceres": (Case((2, 224, 224, 3), 0.0, 255.0, 4),),
    "emotion": (Case((2, 64, 64, 1), -1.0, 1.0, 5),),
    "mobilenet-v2-embed": (Case((2, 224, 224, 3), 0.0, 1.0, 6),),
}


def pattern(case: Case) -> np.ndarray:
    """An image-like float32 tensor: smooth gradients and blobs plus hashed noise."""
    grid = np.indices(case.shape, dtype=np.int64)
    batch, channel = grid[0], grid[case.channel_axis]
    spatial = [g for i, g in enumerate(grid[1:], 1) if i != case.channel_axis % len(case.shape)]
    y, x = spatial[0], spatial[1]
    seed = case.seed
    wave = (y * (3 + seed) + x * (5 + 2 * seed) + channel * 97 + batch * 131) % 512
    smooth = np.abs(wave - 256)  # 0..256, a triangle wave
    cy, cx = (17 * seed) % 64 + 16, (29 * seed) % 64 + 16
    blob = np.maximum(0, 256 - ((y - cy) ** 2 + (x - cx) ** 2) // 4)
    h = (y * 73856093) ^ (x * 19349663) ^ (channel * 83492791) ^ (batch * 2654435) ^ seed
    h = ((h ^ (h >> 13)) & 0xFFFFFFFF) * 1540483477 & 0xFFFFFFFF
    noise = (h ^ (h >> 15)) & 0xFF  # 0..255
    unit = (5 * smooth + 3 * blob + 2 * noise) / (5 * 256 + 3 * 256 + 2 * 255)
    return np.asarray(case.low + unit * (case.high - case.low), np.float32)


def path(model: str) -> Path:
    return FOLDER / f"{model}.npz"


def load(model: str) -> list[dict[str, np.ndarray]]:
    """Per case: each output's expected value, by output name."""
    with np.load(path(model)) as data:
        cases: list[dict[str, np.ndarray]] = [{} for _ in CASES[model]]
        for key in data.files:
            index, name = key.split("/", 1)
            cases[int(index)][name] = data[key]
    return cases


def run(onnx_path: Path, case: Case) -> dict[str, np.ndarray]:
    """The model's outputs for the case's input, on onnxruntime at one thread."""
    from mlapi.onnx_sessions import make_session

    session = make_session(onnx_path)
    names = [o.name for o in session.get_outputs()]
    found = session.run(names, {session.get_inputs()[0].name: pattern(case)})
    return {name: np.asarray(value) for name, value in zip(names, found, strict=True)}


def make(folder: Path) -> None:
    FOLDER.mkdir(parents=True, exist_ok=True)
    for model, cases in CASES.items():
        arrays = {}
        for index, case in enumerate(cases):
            for name, value in run(folder / f"{model}.onnx", case).items():
                arrays[f"{index}/{name}"] = value
        np.savez_compressed(path(model), **arrays)  # type: ignore[arg-type]
        print(f"{path(model)}: {path(model).stat().st_size} bytes")


if __name__ == "__main__":
    make(Path(sys.argv[1]))
