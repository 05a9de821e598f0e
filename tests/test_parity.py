"""`mlapi detect FILE --server URL` prints exactly what the local command prints."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import run_mlapi
from servers import LiveServer

from mlapi.engine import Engine
from mlapi.render import FORMATS
from mlapi.store import ModelCache


@pytest.fixture(scope="module")
def server(store: ModelCache, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with Engine(store) as engine:
        live = LiveServer(engine, tmp_path_factory.mktemp("data"))
        live.users.add("carol", "parity password")
        yield live
        live.stop()


def mlapi(args: list[str], config: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return run_mlapi(args, stdin, MLAPI_CONFIG_DIR=str(config))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_remote_output_is_byte_identical(
    server: LiveServer, photos: Path, tmp_path: Path, fmt: str
) -> None:
    logged_in = mlapi(
        ["login", server.url, "-u", "carol", "--password-stdin"], tmp_path, "parity password\n"
    )
    assert logged_in.returncode == 0, logged_in.stderr
    assert (tmp_path / "tokens.json").stat().st_mode & 0o777 == 0o600
    for args in (
        [str(photos / "object_detection_input.jpg")],
        [
            "-m",
            "faces,objects",
            "-o",
            "objects.confidence=0.5",
            str(photos / "gender_detection_input.jpg"),
        ],
        [str(photos)],  # several files: JSON lines
    ):
        local = mlapi(["detect", "--format", fmt, *args], tmp_path)
        remote = mlapi(["detect", "--format", fmt, "--server", server.url, *args], tmp_path)
        assert local.returncode == remote.returncode == 0, remote.stderr
        assert local.stdout.encode() == remote.stdout.encode()
        assert local.stdout.strip()


def test_remote_without_login_says_how_to_log_in(
    server: LiveServer, photos: Path, tmp_path: Path
) -> None:
    done = mlapi(
        ["detect", "--server", server.url, str(photos / "object_detection_input.jpg")], tmp_path
    )
    assert done.returncode == 1 and f"mlapi login {server.url}" in done.stderr


def test_remote_with_an_api_key_needs_no_login(
    server: LiveServer, photos: Path, tmp_path: Path
) -> None:
    key = server.users.create_key("carol", "cli")
    photo = str(photos / "object_detection_input.jpg")
    remote = run_mlapi(
        ["detect", "--server", server.url, photo], MLAPI_CONFIG_DIR=str(tmp_path), MLAPI_API_KEY=key
    )
    local = run_mlapi(["detect", photo])
    assert remote.returncode == 0 and remote.stdout == local.stdout


def test_a_wrong_password_at_login_says_so(server: LiveServer, tmp_path: Path) -> None:
    wrong = mlapi(["login", server.url, "-u", "carol", "--password-stdin"], tmp_path, "nope\n")
    assert wrong.returncode == 1
    assert "server answered 401: invalid username or password" in wrong.stderr
    assert "log in again" not in wrong.stderr
