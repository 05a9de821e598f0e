"""The commands as a person sees them on a terminal 80 and 120 columns wide: quiet when
there is nothing to say, forgiving at a prompt, every line within the width (issue 33,
items 8-10)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import converse, on_terminal, run_mlapi

from mlapi.images import decode, encode_jpeg
from mlapi.store import ModelCache, catalog

WIDTHS = [80, 120]


def lines_of(shown: str) -> list[str]:
    return [line.rstrip() for line in shown.replace("\r", "").splitlines()]


# -- 8: quiet, forgiving commands -------------------------------------------------------
def test_pulling_what_is_pulled_says_nothing(store: ModelCache) -> None:
    """What ./run does before every job, and so before adduser's password prompt: no line,
    no progress bar."""
    assert on_terminal(["models", "pull", "--quiet", "default"], 80).strip() == ""
    assert "already pulled" in on_terminal(["models", "pull", "default"], 80)
    run = (Path(__file__).parent.parent / "run").read_text()
    assert "models pull --quiet default" in run


@pytest.mark.parametrize("columns", WIDTHS)
def test_adduser_states_the_rule_and_asks_again(
    tmp_path: Path, columns: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLAPI_DATA_DIR", str(tmp_path))  # the child inherits it
    shown, code = converse(
        ["adduser", "ann"],
        ["short", "long enough", "not the same", "long enough", "long enough"],
        columns,
    )
    assert code == 0, shown
    assert shown.index("at least 8 characters") < shown.index("password:")
    assert "passwords need at least 8 characters; try again" in shown
    assert "the two passwords differ; try again" in shown
    assert "added user ann" in shown
    assert all(len(line) <= columns for line in lines_of(shown))
    users = run_mlapi(["users", "list"], MLAPI_DATA_DIR=str(tmp_path))
    assert users.stdout == "ann\n"


def test_adduser_gives_up_after_three_tries(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLAPI_DATA_DIR", str(tmp_path))
    shown, code = converse(["adduser", "ann"], ["short", "", "long enough", "typo"])
    assert code == 1 and "error: no password set after 3 tries" in shown, shown
    assert "Aborted" not in shown
    assert run_mlapi(["users", "list"], MLAPI_DATA_DIR=str(tmp_path)).stdout == ""


# -- 9: say what was found --------------------------------------------------------------
@pytest.mark.parametrize("columns", WIDTHS)
def test_recognize_summary_names_who_was_found(photos: Path, tmp_path: Path, columns: int) -> None:
    couple = decode((photos / "gender_detection_input.jpg").read_bytes()).pixels
    man = tmp_path / "man.jpg"
    man.write_bytes(encode_jpeg(np.ascontiguousarray(couple[:, 420:800])))
    data = {"MLAPI_DATA_DIR": str(tmp_path / "data")}
    assert run_mlapi(["faces", "add", "Kumail", str(man)], **data).returncode == 0
    five = tmp_path / "five.jpg"
    five.write_bytes((photos / "face_detection_input.jpg").read_bytes())
    shown = on_terminal(["detect", "-m", "recognize", "five.jpg"], columns, cwd=tmp_path, **data)
    row = next(line for line in lines_of(shown) if line.strip().startswith("five.jpg"))
    assert "5× face (Kumail, 4× unknown)" in row, shown
    assert all(len(line) <= columns for line in lines_of(shown[shown.rindex("file") :]))


@pytest.mark.parametrize("columns", WIDTHS)
def test_a_missing_file_is_said_once(store: ModelCache, tmp_path: Path, columns: int) -> None:
    shown = on_terminal(["detect", "nothere.jpg"], columns, cwd=tmp_path)
    assert shown.count("No such file") == 1, shown
    several = on_terminal(["detect", "nothere.jpg", "gone.jpg"], columns, cwd=tmp_path)
    said = [line for line in lines_of(several) if "No such file" in line and '{"file"' not in line]
    assert len(said) == 2, several  # stdout's JSON lines aside; the table: "failed (said above)"
    assert "2 of 2 image(s) failed" in several


def test_keys_list_says_when_each_key_was_last_used(tmp_path: Path) -> None:
    data = {"MLAPI_DATA_DIR": str(tmp_path)}
    run_mlapi(["adduser", "ann", "--password-stdin"], "ann's password\n", **data)
    run_mlapi(["keys", "create", "ann", "--name", "porch"], **data)
    lines = run_mlapi(["keys", "list"], **data).stdout.splitlines()
    assert lines[0].split() == ["ID", "USER", "NAME", "CREATED", "LAST", "USED"]
    assert lines[1].endswith("  never") and lines[0].index("LAST USED") == lines[1].index("never")


# -- 10: 80 columns ---------------------------------------------------------------------
@pytest.mark.parametrize("columns", WIDTHS)
def test_models_list_fits_without_breaking_a_word(columns: int) -> None:
    shown = lines_of(on_terminal(["models", "list"], columns))
    assert all(len(line) <= columns for line in shown), shown
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in shown if "│" in line]
    assert {entry.name for entry in catalog.CATALOG} <= {row[0] for row in rows}
    header = next(line for line in shown if "┃" in line)
    if "source" not in header:
        assert any("left out" in line and "--wide" in line for line in shown)
    if columns == 80:  # the widest column goes first
        assert "source" not in header and "pulled" in header
    wide = on_terminal(["models", "list", "--wide"], columns)
    sources = json.loads(run_mlapi(["models", "list", "--json"]).stdout)
    assert all(r["source"] in wide for r in sources)  # every source whole, on one line
