"""Check the PyInstaller binary against the virtualenv and print its figures.

    ./run build && .venv/bin/python tests/gates/binary_smoke.py [dist/mlapi/mlapi]

With an empty model cache (so only the models bundled inside can answer): `detect` on the
sample photos and `serve` answering the same POSTs must give byte-identical output to the
virtualenv's `mlapi`. Prints the binary's size and its `--help`, `detect` and
`serve`-to-/ready times; the console's page and files must be the same bytes too. Exit 1
on any difference.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from mlapi import samples
from mlapi.store import ModelCache

VENV_MLAPI = str(Path(sys.executable).with_name("mlapi"))
MODELS = "objects,faces,genderage,emotion,faceprint,embeddings"


def folder_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, bytes]:
    started = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed: {done.stderr.decode()[-500:]}")
    return time.perf_counter() - started, done.stdout


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve(binary: str, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str, float]:
    port = free_port()
    args = ["serve", "--port", str(port), "--models", MODELS]
    args += ["--keyless-networks", "127.0.0.1/32", "--keyless-dialects", "deepstack"]
    started = time.perf_counter()
    proc = subprocess.Popen([binary, *args], env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    while time.perf_counter() - started < 120:
        try:
            urllib.request.urlopen(f"{url}/ready", timeout=1)
            return proc, url, time.perf_counter() - started
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{binary} serve was not ready in 120 s")


def post(url: str, route: str, photo: Path) -> bytes:
    boundary = "mlapi-smoke"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{photo.name}"'
            "\r\nContent-Type: image/jpeg\r\n\r\n"
        ).encode()
        + photo.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = urllib.request.Request(
        url + route, body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        return bytes(answer.read())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("binary", nargs="?", default="dist/mlapi/mlapi", help="the binary")
    binary = parser.parse_args().binary
    photos = sorted(samples.fetch(ModelCache()).glob("*.jpg"))
    work = Path(tempfile.mkdtemp(prefix="mlapi-smoke-"))
    empty = dict(os.environ, MLAPI_CACHE_DIR=str(work / "cache"))  # only the bundle answers
    empty.update(MLAPI_DATA_DIR=str(work / "data-bin"), MLAPI_CONFIG_DIR=str(work / "cfg-bin"))
    venv = dict(os.environ, MLAPI_DATA_DIR=str(work / "data-venv"))
    venv.update(MLAPI_CONFIG_DIR=str(work / "cfg-venv"))
    print(f"binary: {binary}, folder {folder_size(Path(binary).parent) / 1e6:.0f} MB")
    failures = 0
    help_s, _ = timed([binary, "--help"], empty)
    detect_s, got = timed([binary, "detect", "-m", MODELS, *map(str, photos)], empty)
    _, want = timed([VENV_MLAPI, "detect", "-m", MODELS, *map(str, photos)], venv)
    same = got == want
    failures += not same
    print(
        f"--help {help_s:.2f} s; detect of {len(photos)} photos {detect_s:.2f} s; "
        f"identical to the virtualenv: {same}"
    )
    bin_proc, bin_url, ready_s = serve(binary, empty)
    venv_proc, venv_url, venv_ready_s = serve(VENV_MLAPI, venv)
    try:
        print(f"serve to /ready: binary {ready_s:.2f} s, virtualenv {venv_ready_s:.2f} s")
        for route in ("/v1/vision/detection", "/v1/vision/face"):
            for photo in photos:
                same = post(bin_url, route, photo) == post(venv_url, route, photo)
                failures += not same
                print(f"  POST {route} {photo.name}: identical {same}")
        for page in ("/", "/console/static/console.js", "/console/static/console.css"):
            with (
                urllib.request.urlopen(bin_url + page, timeout=10) as mine,
                urllib.request.urlopen(venv_url + page, timeout=10) as theirs,
            ):
                same = mine.read() == theirs.read()
            failures += not same
            print(f"  GET {page} (the console): identical {same}")
    finally:
        for proc in (bin_proc, venv_proc):
            proc.terminate()
            proc.wait(30)
    if (work / "cache" / "models").exists():
        print("the binary wrote models into the empty cache instead of using its bundle")
        failures += 1
    print("OK" if not failures else f"{failures} difference(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
