"""`mlapi detect` and `mlapi models` as a user runs them: a real process, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from helpers import on_terminal, run_mlapi

from mlapi.store import ModelCache


def mlapi(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    return run_mlapi(list(args), **({"MLAPI_CACHE_DIR": str(cache)} if cache else {}))


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    text = resources.files("mlapi").joinpath("schema/result.schema.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document


def test_detect_one_photo_prints_one_schema_valid_document(
    photos: Path, schema: dict[str, Any]
) -> None:
    done = mlapi("detect", "-m", "objects,faces", str(photos / "gender_detection_input.jpg"))
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    jsonschema.validate(document, schema)
    labels = [d["label"] for d in document["detections"]]
    assert labels.count("face") == 2 and labels.count("person") >= 2


def test_mlapi_format_is_the_seed_array(photos: Path) -> None:
    done = mlapi(
        "detect", "--format", "mlapi", "-m", "faces", str(photos / "face_detection_input.jpg")
    )
    items = json.loads(done.stdout)
    assert len(items) == 5
    for item in items:
        assert set(item) == {"type", "label", "confidence", "box"} and item["type"] == "face"
        assert item["confidence"].endswith("%") and len(item["box"]) == 4


def test_several_files_give_json_lines_and_bad_files_are_reported(
    photos: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "notes[1].jpg"  # brackets are printed as they are, not as markup
    bad.write_text("not a photo")
    twin = tmp_path / "twin" / "object_detection_input.jpg"  # the same name in another folder
    twin.parent.mkdir()
    twin.write_bytes((photos / "gender_detection_input.jpg").read_bytes())
    annotated = tmp_path / "annotated"
    done = mlapi(
        "detect",
        str(photos / "object_detection_input.jpg"),
        str(bad),
        str(photos / "gender_detection_input.jpg"),
        str(twin),
        "--annotate",
        str(annotated),
    )
    assert done.returncode == 1  # one failure, the others still processed
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [Path(line["file"]).name for line in lines] == [
        "object_detection_input.jpg",
        "notes[1].jpg",
        "gender_detection_input.jpg",
        "object_detection_input.jpg",
    ]
    assert "not an image" in lines[1]["error"] and "notes[1].jpg: not an image" in done.stderr
    assert lines[0]["result"]["width"] == 640
    assert sorted(p.name for p in annotated.iterdir()) == [  # nothing overwritten
        "gender_detection_input.jpg",
        "object_detection_input-2.jpg",
        "object_detection_input.jpg",
    ]


def test_a_folder_says_which_files_it_skipped(photos: Path, tmp_path: Path) -> None:
    (tmp_path / "photo.jpg").write_bytes((photos / "object_detection_input.jpg").read_bytes())
    (tmp_path / "notes.txt").write_text("not a photo")
    done = mlapi("detect", str(tmp_path))
    assert done.returncode == 0 and json.loads(done.stdout)["width"] == 640
    assert f"skipped {tmp_path / 'notes.txt'}: not an image file type" in done.stderr


def test_directory_and_glob_inputs(photos: Path) -> None:
    by_dir = mlapi("detect", str(photos))
    by_glob = mlapi("detect", str(photos / "*_input.jpg"))
    assert by_dir.returncode == by_glob.returncode == 0
    assert by_dir.stdout == by_glob.stdout and len(by_dir.stdout.splitlines()) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-m", "unicorns"], "unknown detector 'unicorns'"),
        (["-o", "objects.confidence=2"], "between 0.0 and 1.0"),
        (["-o", "objects.colour=red"], "unknown option colour"),
        (["-o", "confidence"], "is not MODEL.KEY=VALUE"),
    ],
)
def test_bad_arguments_are_usage_errors(photos: Path, args: list[str], message: str) -> None:
    done = mlapi("detect", *args, str(photos / "object_detection_input.jpg"))
    assert done.returncode == 2 and message in done.stderr and done.stdout == ""


def test_missing_model_says_how_to_fetch_it(photos: Path, tmp_path: Path) -> None:
    done = mlapi("detect", str(photos / "object_detection_input.jpg"), cache=tmp_path)
    assert done.returncode == 1 and "mlapi models pull nanodet" in done.stderr


def test_models_list_verify_and_import(store: ModelCache, tmp_path: Path) -> None:
    listing = json.loads(mlapi("models", "list", "--json").stdout)
    assert {"nanodet", "blazeface-full", "res10-ssd", "yolov3-tiny"} <= {r["name"] for r in listing}
    verified = mlapi("models", "verify", "nanodet", "blazeface-full")
    assert verified.returncode == 0 and "nanodet: ok" in verified.stdout
    onnx_file = store.artifact("blazeface-full")
    imported = mlapi("models", "import", str(onnx_file), "--name", "my-faces", cache=tmp_path)
    assert imported.returncode == 0, imported.stderr
    again = mlapi("models", "import", str(onnx_file), "--name", "my-faces", cache=tmp_path)
    assert again.returncode == 1 and "already exists" in again.stderr
    listed = json.loads(mlapi("models", "list", "--json", cache=tmp_path).stdout)
    assert any(r["name"] == "my-faces" and r["pulled"] for r in listed)


def test_adduser_without_a_terminal_says_what_to_do(tmp_path: Path) -> None:
    done = run_mlapi(["adduser", "bob"], "", MLAPI_DATA_DIR=str(tmp_path))
    assert done.returncode == 2 and "--password-stdin" in done.stderr
    assert "Warning" not in done.stderr and "Aborted" not in done.stderr
    piped = run_mlapi(
        ["adduser", "bob", "--password-stdin"], "a long password\n", MLAPI_DATA_DIR=str(tmp_path)
    )
    assert piped.returncode == 0


def test_detect_reads_standard_input(photos: Path) -> None:
    data = (photos / "object_detection_input.jpg").read_bytes()
    piped = subprocess.run(
        [sys.executable, "-m", "mlapi", "detect", "-"], input=data, capture_output=True, check=False
    )
    assert piped.returncode == 0
    assert (
        piped.stdout.decode() == mlapi("detect", str(photos / "object_detection_input.jpg")).stdout
    )


def test_onnxruntime_writes_nothing_into_home(tmp_path: Path) -> None:
    """onnxruntime's telemetry files (~/.cache/Microsoft) are never written by mlapi."""
    code = (
        "import mlapi, onnxruntime, numpy as np\n"
        "from onnx import TensorProto, helper\n"
        "x = helper.make_tensor_value_info('x', TensorProto.FLOAT, [1])\n"
        "g = helper.make_graph([helper.make_node('Relu', ['x'], ['y'])], 'g', [x],\n"
        "    [helper.make_tensor_value_info('y', TensorProto.FLOAT, [1])])\n"
        "m = helper.make_model(g, opset_imports=[helper.make_opsetid('', 13)])\n"
        "m.ir_version = 7\n"
        "s = onnxruntime.InferenceSession(m.SerializeToString())\n"
        "assert s.run(None, {'x': np.array([-1.0], np.float32)})[0][0] == 0\n"
    )
    env = {
        k: v for k, v in os.environ.items() if k not in ("ORT_DISABLE_TELEMETRY", "XDG_CACHE_HOME")
    }
    env["HOME"] = str(tmp_path)
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    assert [p.name for p in tmp_path.rglob("*")] == []


def test_a_pattern_that_matches_nothing_is_named_as_typed(tmp_path: Path) -> None:
    result = run_mlapi(["detect", str(tmp_path / "no such [dir]" / "x[1].jpg")])
    assert result.returncode == 1
    assert f"error: no file matched '{tmp_path}/no such [dir]/x[1].jpg'" in result.stderr


@pytest.mark.parametrize("columns", ["80", "120"])
def test_models_list_never_cuts_a_name(columns: str) -> None:
    from mlapi.store import catalog

    listed = run_mlapi(["models", "list"], COLUMNS=columns)
    assert listed.returncode == 0, listed.stderr
    cells = {cell.strip() for line in listed.stdout.splitlines() for cell in line.split("│")}
    assert {entry.name for entry in catalog.CATALOG} <= cells


def test_keys_list_has_a_header_and_lined_up_columns(tmp_path: Path) -> None:
    data = {"MLAPI_DATA_DIR": str(tmp_path)}
    for user in ("alexandra", "bo"):
        run_mlapi(["adduser", user, "--password-stdin"], f"{user} password\n", **data)
    run_mlapi(["keys", "create", "alexandra", "--name", "front door camera"], **data)
    run_mlapi(["keys", "create", "bo"], **data)
    lines = run_mlapi(["keys", "list"], **data).stdout.splitlines()
    assert lines[0].split() == ["ID", "USER", "NAME", "CREATED", "LAST", "USED"]
    assert len(lines) == 3
    starts = {line.index(word) for line, word in zip(lines, ["NAME", "front", "key"], strict=True)}
    assert len(starts) == 1  # the NAME column starts at the same place on every line
    helps = [run_mlapi([*cmd, "--help"]).stdout for cmd in (["users", "list"], ["keys", "list"])]
    assert "Every user" in helps[0] and "Every API key" in helps[1]


@pytest.mark.parametrize("columns", [80, 120])
def test_detect_summary_shows_failures_in_natural_order(
    photos: Path, tmp_path: Path, columns: int
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("f1", "f2", "f10"):
        (folder / f"{name}.jpg").write_bytes((photos / "object_detection_input.jpg").read_bytes())
    (folder / "f3.jpg").write_bytes(b"junk")
    shown = on_terminal(["detect", "photos"], columns, cwd=tmp_path)
    table = shown[shown.rindex("file ") :].replace("\r", "").splitlines()
    names = [line.split()[0] for line in table[1:] if line.strip().startswith("photos/")]
    assert names == ["photos/f1.jpg", "photos/f2.jpg", "photos/f3.jpg", "photos/f10.jpg"]
    assert any("f3.jpg" in line and "failed" in line for line in table), table
    assert all(len(line) <= columns for line in table), table
    assert "1 of 4 image(s) failed" in shown


def test_the_readmes_sample_output_is_what_the_command_prints(photos: Path) -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    block = readme.split("Native result (", 1)[1].split("```json\n", 1)[1].split("```", 1)[0]
    shown = json.loads(block)
    done = run_mlapi(
        ["detect", "-m", "objects,genderage", str(photos / "gender_detection_input.jpg")]
    )
    printed = json.loads(done.stdout)
    assert (shown["width"], shown["height"]) == (printed["width"], printed["height"])
    assert all(d in printed["detections"] for d in shown["detections"]), shown["detections"]
