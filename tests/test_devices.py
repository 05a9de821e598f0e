"""Devices (--device): parsing, the fall back to the CPU, and, where onnxruntime has
OpenVINO (the openvino variant: MLAPI_EXTRAS=openvino ./run test tests/test_devices.py),
every default detector's answers on OpenVINO's CPU plugin against the CPU's, on the real
sample photos. Without OpenVINO those tests skip, except under MLAPI_REQUIRE_OPENVINO=1
(CI's openvino step), where they fail."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from mlapi import devices, metrics
from mlapi.config import DEFAULT_MODELS, RuntimeConfig, ServerConfig
from mlapi.engine import Engine
from mlapi.result import Detection, Result
from mlapi.store import ModelCache

REQUIRE_OPENVINO = os.environ.get("MLAPI_REQUIRE_OPENVINO") == "1"
BOX_PX, CONFIDENCE = 2, 0.02  # the most an answer on another device may differ


def has_openvino() -> bool:
    import onnxruntime as ort

    return devices.OPENVINO in ort.get_available_providers()


def needs_openvino() -> None:
    if has_openvino():
        return
    if REQUIRE_OPENVINO:
        pytest.fail("onnxruntime has no OpenVINO (MLAPI_REQUIRE_OPENVINO=1)")
    pytest.skip(
        "onnxruntime has no OpenVINO: MLAPI_EXTRAS=openvino ./run test tests/test_devices.py"
    )


def fallbacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "so it runs on the CPU" in r.getMessage()
    ]


# -- the setting -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("cpu", "cpu"),
        (" AUTO ", "auto"),
        ("OpenVINO", "openvino"),
        ("openvino:gpu", "openvino:GPU"),
        ("openvino:GPU.1", "openvino:GPU.1"),
        ("openvino:npu,faces=cpu", "openvino:NPU,faces=cpu"),
        ("cuda", "cuda:0"),
        ("cuda:1", "cuda:1"),
        ("faces=openvino:cpu", "faces=openvino:CPU"),
        ("cpu,objects=cuda", "objects=cuda:0"),
    ],
)
def test_device_setting_is_read_in_one_spelling(text: str, canonical: str) -> None:
    assert devices.parse_devices(text) == canonical


@pytest.mark.parametrize(
    "text", ["gpu", "openvino:TPU", "cuda:x", "cpu,auto", "Bad Name=cpu", "objects=tpu"]
)
def test_a_device_setting_that_means_nothing_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        devices.parse_devices(text)


def test_each_detector_gets_its_own_device_or_the_default() -> None:
    config = RuntimeConfig(device="openvino:GPU,faces=cpu,objects=cuda:1")
    assert config.device_for("faces") == "cpu"
    assert config.device_for("objects") == "cuda:1"
    assert config.device_for("emotion") == config.device_for(None) == "openvino:GPU"
    assert RuntimeConfig().device_for("objects") == "cpu"


def test_detect_refuses_an_unknown_device_before_loading_anything() -> None:
    from mlapi.cli import main

    out = CliRunner().invoke(main, ["detect", "--device", "tpu", "x.jpg"])
    assert out.exit_code == 2 and "unknown device 'tpu'" in out.output
    shown = CliRunner().invoke(main, ["stream", "--help"], terminal_width=200).output
    assert "--device" in shown and "MLAPI_DEVICE" in shown


def test_metrics_label_each_detector_with_its_device() -> None:
    snap: metrics.Snapshot = {
        "requests": [],
        "rejected": [],
        "queue": {},
        "inference": [("faces", 2, 0.5), ("objects", 1, 0.25)],
        "latency": [],
        "ready": True,
    }
    text = metrics.render(snap, 1, {"objects": "openvino:CPU"})
    assert 'mlapi_inference_seconds_count{detector="objects",device="openvino:CPU"} 1' in text
    assert 'mlapi_inference_seconds_sum{detector="faces",device="cpu"} 0.500000' in text


# -- the fall back, on any build ---------------------------------------------------------
def test_a_device_that_is_not_here_falls_back_to_the_cpu_with_one_warning(
    store: ModelCache, photos: Path, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """No NPU here, with or without OpenVINO: `faces` runs on the CPU, says so once, and
    answers as the CPU does; `objects` stays where it was put."""
    image = (photos / "gender_detection_input.jpg").read_bytes()
    with Engine(store) as cpu:
        expected = cpu.detect(image, ["faces", "objects"]).detections
    config = RuntimeConfig(device="faces=openvino:NPU", openvino_cache=tmp_path)
    caplog.set_level(logging.INFO, "mlapi")
    with Engine(store, config) as engine:
        for _ in range(3):  # said once, however often it runs
            assert engine.detect(image, ["faces", "objects"]).detections == expected
        assert engine.runtime.devices() == {"faces": "cpu", "objects": "cpu"}
    said = fallbacks(caplog)
    assert len(said) == 1, said
    assert said[0].startswith("model blazeface-full could not load on openvino:NPU")
    reason = "OpenVINO sees no NPU" if has_openvino() else "this onnxruntime has no OpenVINO"
    assert reason in said[0]
    assert any("faces: model blazeface-full runs on cpu (not openvino:NPU" in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_the_server_shows_where_each_detector_runs(
    store: ModelCache, photos: Path, tmp_path: Path
) -> None:
    """/api/v1/models and /metrics name each loaded detector's device."""
    from servers import LiveServer

    config = RuntimeConfig(device="faces=openvino:NPU")
    with Engine(store, config) as engine:
        live = LiveServer(engine, tmp_path / "data", ServerConfig(models=("objects", "faces")))
        try:
            live.users.add("alice", "correct horse battery")
            key = live.users.create_key("alice", "probe")
            image = (photos / "object_detection_input.jpg").read_bytes()
            headers = {"X-API-Key": key, "Content-Type": "image/jpeg"}
            assert (
                live.call("POST", "/api/v1/detect?models=objects,faces", image, headers).status
                == 200
            )
            listed = live.call("GET", "/api/v1/models", headers={"X-API-Key": key}).json()
            where = {m["name"]: m.get("device") for m in listed["models"]}
            assert where["objects"] == where["faces"] == "cpu" and where["emotion"] is None
            text = live.call("GET", "/metrics", headers={"X-API-Key": key}).body.decode()
            assert 'mlapi_inference_seconds_count{detector="faces",device="cpu"} ' in text
            assert 'mlapi_inference_seconds_count{detector="objects",device="cpu"} ' in text
        finally:
            live.stop()


def test_what_this_build_offers() -> None:
    """The CPU build sees no OpenVINO device (and its OpenVINO tests skip, which CI's
    openvino step forbids); the OpenVINO build sees at least OpenVINO's CPU plugin. Either
    way `auto` finds no GPU or NPU on these machines."""
    if has_openvino():
        assert "CPU" in devices.openvino_devices()
        assert devices.resolve_openvino() in ("openvino:GPU", "openvino:NPU", "openvino:CPU")
    else:
        assert not REQUIRE_OPENVINO, "MLAPI_REQUIRE_OPENVINO=1 in a build without OpenVINO"
        assert devices.openvino_devices() == []
    assert devices.resolve_auto() in ("cpu", "cuda:0", "openvino:GPU", "openvino:NPU")


# -- OpenVINO's CPU plugin against the CPU ---------------------------------------------
def matched(cpu: Result, other: Result) -> Iterator[tuple[Detection, Detection]]:
    """Each CPU detection with the other device's of the same model and label whose box is
    nearest (their order may swap where two scores are within a hair)."""
    assert len(cpu.detections) == len(other.detections), (cpu, other)
    left = list(other.detections)
    for d in cpu.detections:
        same = [o for o in left if o.model == d.model and o.label == d.label]
        assert same, f"no {d.label} from {d.model} on the other device"
        best = min(same, key=lambda o: max(abs(a - b) for a, b in zip(o.box, d.box, strict=True)))
        left.remove(best)
        yield d, best


def differences(cpu: Result, other: Result) -> tuple[int, float]:
    """The largest box difference (px) and confidence difference of two answers, checking
    the same labels and attributes' labels, and embeddings pointing the same way."""
    box, confidence = 0, 0.0
    for d, o in matched(cpu, other):
        box = max(box, *(abs(a - b) for a, b in zip(o.box, d.box, strict=True)))
        confidence = max(confidence, abs(o.confidence - d.confidence))
        for name, value in d.attributes.items():
            if isinstance(value, dict) and "label" in value:  # gender, emotion
                assert o.attributes[name]["label"] == value["label"], (name, d, o)
                confidence = max(
                    confidence, abs(o.attributes[name]["confidence"] - value["confidence"])
                )
        if d.embedding:
            a, b = np.asarray(d.embedding), np.asarray(o.embedding)
            assert float(a @ b / np.linalg.norm(a) / np.linalg.norm(b)) > 0.999
    return box, confidence


def test_every_default_detector_answers_on_openvino_as_on_the_cpu(
    store: ModelCache, photos: Path, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    needs_openvino()
    images = sorted(photos.glob("*.jpg"))
    assert len(images) >= 3
    caplog.set_level(logging.INFO, "mlapi")
    config = RuntimeConfig(device="openvino:CPU", openvino_cache=tmp_path / "compiled")
    with Engine(store) as cpu, Engine(store, config) as ov:
        for name in DEFAULT_MODELS:
            for path in images:
                data = path.read_bytes()
                box, confidence = differences(cpu.detect(data, [name]), ov.detect(data, [name]))
                assert box <= BOX_PX and confidence <= CONFIDENCE, (name, path.name)
        on = ov.runtime.devices()
        assert set(DEFAULT_MODELS) <= set(on), on
        assert all(device == "openvino:CPU" for device in on.values()), on
    assert fallbacks(caplog) == []
    assert any(
        r.getMessage() == "objects: model nanodet runs on openvino:CPU" for r in caplog.records
    )
    assert any((tmp_path / "compiled").iterdir())  # OpenVINO kept what it compiled


@pytest.mark.parametrize(
    ("options", "step"),
    [
        ("precision=BOGUS", "onnxruntime could not start OpenVINOExecutionProvider"),
        ("bogus_key=1", "Invalid OpenVINO EP option"),
    ],
)
def test_openvino_refusing_a_model_falls_back_to_the_cpu_with_one_warning(
    store: ModelCache,
    photos: Path,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    options: str,
    step: str,
) -> None:
    """A forced failure inside onnxruntime (an option OpenVINO refuses: it then drops the
    provider, or raises) leaves each model on the CPU with one warning, same answers."""
    needs_openvino()
    image = (photos / "gender_detection_input.jpg").read_bytes()
    with Engine(store) as cpu:
        expected = cpu.detect(image, ["objects", "genderage"]).detections
    config = RuntimeConfig(device="openvino:CPU", openvino_options=options, openvino_cache=tmp_path)
    with Engine(store, config) as engine:
        for _ in range(2):
            assert engine.detect(image, ["objects", "genderage"]).detections == expected
        assert set(engine.runtime.devices().values()) == {"cpu"}
    said = fallbacks(caplog)
    models = sorted(m.split()[1] for m in said)
    assert models == ["blazeface-full", "faceres", "nanodet"], said  # one each
    assert all(step in m for m in said), said


def test_models_list_says_where_each_pulled_model_runs(store: ModelCache) -> None:
    """`mlapi models list --device …` loads each pulled model there: a device column."""
    import json

    from mlapi.cli import main

    out = CliRunner().invoke(main, ["models", "list", "--json", "--device", "faces=openvino:NPU"])
    assert out.exit_code == 0, out.output
    rows = {r["name"]: r for r in json.loads(out.stdout)}
    assert rows["nanodet"]["device"] == "cpu"
    assert rows["blazeface-full"]["device"].startswith("cpu (not openvino:NPU: ")
    plain = CliRunner().invoke(main, ["models", "list", "--json"], env={"MLAPI_DEVICE": ""})
    assert "device" not in json.loads(plain.stdout)[0]  # nothing loaded on the CPU alone
    if has_openvino():
        out = CliRunner().invoke(main, ["models", "list", "--json", "--device", "openvino:CPU"])
        rows = {r["name"]: r for r in json.loads(out.stdout)}
        assert rows["nanodet"]["device"] == rows["faceres"]["device"] == "openvino:CPU"


def test_provider_options_keep_the_commas_inside_brackets() -> None:
    text = "precision=FP16,reshape_input=input_1:0[1,3,32..64,32..64], num_streams=2"
    assert devices.provider_options(text) == {
        "precision": "FP16",
        "reshape_input": "input_1:0[1,3,32..64,32..64]",
        "num_streams": "2",
    }
    with pytest.raises(ValueError):
        devices.provider_options("precision")


def test_a_model_that_fails_to_run_on_openvino_runs_again_on_the_cpu(
    store: ModelCache, photos: Path, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A session OpenVINO made but cannot run (NanoDet's input fixed smaller than any
    photo: OpenVINO refuses the tensor at run time) is made again on the CPU, which answers
    the same request: one warning, the CPU's answers from the first request on."""
    needs_openvino()
    images = [p.read_bytes() for p in sorted(photos.glob("*.jpg"))]
    with Engine(store) as cpu:
        expected = [cpu.detect(image, ["objects"]).detections for image in images]
    config = RuntimeConfig(
        device="objects=openvino:CPU",
        openvino_options="reshape_input=input_1:0[1,3,32..64,32..64]",
        openvino_cache=tmp_path,
    )
    caplog.set_level(logging.INFO, "mlapi")
    with Engine(store, config) as engine:
        engine.warm(["objects"])
        assert engine.runtime.devices() == {"objects": "openvino:CPU"}  # made there
        assert [engine.detect(image, ["objects"]).detections for image in images] == expected
        assert engine.runtime.devices() == {"objects": "cpu"}
    said = fallbacks(caplog)
    assert len(said) == 1 and said[0].startswith("model nanodet could not run on openvino:CPU")
