"""Check the container image against the virtualenv and print its figures.

    ./run image && .venv/bin/python tests/gates/image_smoke.py [dist/mlapi-vision-VERSION.tar]

Loads the archive into podman and runs it on loopback with a data volume: /ready, a user
and a key made with `podman exec mlapi …`, one detection per dialect (native, seed,
DeepStack, HomeGallery) byte for byte as the virtualenv's server answers (HomeGallery's
`created` time aside), a face enrolled; then `podman restart` (the user, the key and the
face are still there) and `podman stop` while requests are in flight (they finish).
Prints the image's sizes, start to /ready, idle RSS. Exit 1 on any failure.

The podman settings this machine needs (runc, cgroupfs, no default ulimits) are passed
here through CONTAINERS_CONF: they belong to the test set-up, not to the image.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from mlapi import __version__, samples
from mlapi.store import ModelCache

sys.path.insert(0, str(Path(__file__).parent))
from binary_smoke import free_port

VENV_MLAPI = str(Path(sys.executable).with_name("mlapi"))
MODELS = "objects,faces,genderage,emotion,faceprint,embeddings"
NAME = "mlapi-smoke"
CONF = """[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
"""


def podman(*args: str, stdin: str | None = None, check: bool = True) -> str:
    done = subprocess.run(
        ["podman", *args], input=stdin, capture_output=True, text=True, check=False
    )
    if check and done.returncode != 0:
        raise SystemExit(f"podman {' '.join(args[:2])} failed: {done.stderr[-800:]}")
    return done.stdout.strip()


def call(url: str, body: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, data=body, headers=headers or {})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return bytes(answer.read())


def wait_ready(url: str, timeout: float = 180) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            call(url + "/ready")
            return time.perf_counter() - started
        except (OSError, urllib.error.HTTPError):
            time.sleep(0.1)
    raise SystemExit(f"{url} was not ready in {timeout:.0f} s")


def form(photo: bytes, **fields: str) -> tuple[bytes, dict[str, str]]:
    boundary = "mlapi-image-smoke"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="p.jpg"'
        "\r\nContent-Type: image/jpeg\r\n\r\n".encode()
        + photo
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def answers(url: str, key: str, photo: bytes) -> dict[str, Any]:
    """One detection per dialect, as the bytes a client reads (HomeGallery's without its
    `created` time, which is the moment of the answer)."""
    raw = {"X-API-Key": key, "Content-Type": "image/jpeg"}
    deepstack_body, deepstack_headers = form(photo, api_key=key)
    homegallery = json.loads(call(f"{url}/hg/{key}/objects", photo, raw))
    del homegallery["created"]
    return {
        "native": call(f"{url}/api/v1/detect?models=objects,faces", photo, raw),
        "seed": call(f"{url}/api/v1/detect/object?type=object", photo, raw),
        "deepstack": call(f"{url}/v1/vision/detection", deepstack_body, deepstack_headers),
        "homegallery": homegallery,
    }


def replicas(tag: str, photo: bytes, couple: bytes) -> int:
    """The compose file's second profile with plain `podman run`: two containers of the
    image sharing a PostgreSQL, HAProxy in front (PostgreSQL and HAProxy run from the
    machine's packages here: no registry to pull their images from)."""
    sys.path.insert(0, str(Path(__file__).parent.parent))  # tests/
    from services import Cluster, HAProxy, new_database

    print("two containers on one PostgreSQL behind HAProxy:")
    cluster = Cluster()
    names = [f"{NAME}-{i}" for i in (1, 2)]
    ports = [free_port() for _ in names]
    balancer = None
    failures = 0
    try:
        database = new_database(cluster.url())
        for name, port in zip(names, ports, strict=True):
            podman("rm", "-f", "-v", name, check=False)
            podman("run", "-d", "--name", name, "--network", "host", "-e", f"MLAPI_PORT={port}",
                   "-e", f"MLAPI_DATABASE_URL={database}",
                   "-e", "MLAPI_MODELS=objects,faces,faceprint", tag)  # fmt: skip
        for port in ports:
            wait_ready(f"http://127.0.0.1:{port}")
        balancer = HAProxy(ports)
        url = f"http://127.0.0.1:{balancer.port}"
        podman("exec", "-i", names[0], "mlapi", "adduser", "smoke", "--password-stdin",
               stdin="smoke password\n")  # fmt: skip
        key = podman("exec", names[1], "mlapi", "keys", "create", "smoke")  # on the other one
        raw = {"X-API-Key": key, "Content-Type": "image/jpeg"}
        got = {call(f"{url}/api/v1/detect", photo, raw) for _ in range(4)}
        ok = len(got) == 1
        body, headers = form(couple, api_key=key, userid="Smoke")
        call(f"http://127.0.0.1:{ports[0]}/v1/vision/face/register", body, headers)
        body, headers = form(couple, api_key=key)
        listed = json.loads(call(f"http://127.0.0.1:{ports[1]}/v1/vision/face/list", body, headers))
        ok = ok and listed["faces"] == ["Smoke"]
        print(f"  a user made in one, a key in the other, answers alike, faces shared: "
              f"{'yes' if ok else 'NO'}")  # fmt: skip
        failures += not ok
    finally:
        if balancer is not None:
            balancer.close()
        for name in names:
            podman("rm", "-f", "-v", name, check=False)
        cluster.close()
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "archive", nargs="?", type=Path, default=Path(f"dist/mlapi-vision-{__version__}.tar"),
        help="the image archive ./run image wrote",
    )  # fmt: skip
    archive = parser.parse_args().archive
    work = Path(tempfile.mkdtemp(prefix="mlapi-image-smoke-"))
    settings = Path(tempfile.mkdtemp(prefix="mlapi-podman-")) / "containers.conf"
    settings.write_text(CONF)
    os.environ["CONTAINERS_CONF"] = str(settings)
    photos = samples.fetch(ModelCache())
    photo = (photos / "object_detection_input.jpg").read_bytes()
    couple = (photos / "gender_detection_input.jpg").read_bytes()
    failures = 0

    def check(what: str, ok: bool) -> None:
        nonlocal failures
        failures += not ok
        print(f"  {what}: {'yes' if ok else 'NO'}")

    started = time.perf_counter()
    loaded = podman("load", "-q", "-i", str(archive))
    tag = loaded.split("Loaded image:")[-1].strip().split(",")[0].strip() or "mlapi-vision"
    unpacked = int(podman("image", "inspect", "--format", "{{.Size}}", tag))
    print(
        f"image {tag}: archive {archive.stat().st_size / 1e6:.0f} MB, unpacked "
        f"{unpacked / 1e6:.0f} MB; loaded in {time.perf_counter() - started:.1f} s"
    )
    data = work / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, 10001, 10001)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    podman("rm", "-f", NAME, check=False)
    run = ["run", "-d", "--name", NAME, "--network", "host", "-e", f"MLAPI_PORT={port}",
           "-e", f"MLAPI_MODELS={MODELS}", "-v", f"{data}:/data", tag]  # fmt: skip
    venv_env = dict(os.environ, MLAPI_DATA_DIR=str(work / "venv"))
    venv_port = free_port()
    venv = subprocess.Popen(
        [VENV_MLAPI, "serve", "--port", str(venv_port), "--models", MODELS],
        env=venv_env, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        started = time.perf_counter()
        podman(*run)
        wait_ready(url)
        ready = time.perf_counter() - started
        rss = podman("exec", NAME, "sh", "-c", "grep VmRSS /proc/1/status").split()[1]
        print(f"container start to /ready: {ready:.1f} s; idle RSS {int(rss) / 1024:.0f} MiB")
        podman("exec", "-i", NAME, "mlapi", "adduser", "smoke", "--password-stdin",
               stdin="smoke password\n")  # fmt: skip
        key = podman("exec", NAME, "mlapi", "keys", "create", "smoke")
        venv_cli = {"env": venv_env, "text": True, "check": True, "capture_output": True}
        subprocess.run(
            [VENV_MLAPI, "adduser", "smoke", "--password-stdin"], input="smoke password\n",
            **venv_cli,  # type: ignore[call-overload]
        )  # fmt: skip
        made = subprocess.run([VENV_MLAPI, "keys", "create", "smoke"], **venv_cli)  # type: ignore[call-overload]
        venv_key = made.stdout.strip()
        wait_ready(f"http://127.0.0.1:{venv_port}")
        mine = answers(url, key, photo)
        theirs = answers(f"http://127.0.0.1:{venv_port}", venv_key, photo)
        print("one detection per dialect, identical to the virtualenv's:")
        for dialect in mine:
            check(dialect, mine[dialect] == theirs[dialect])
        page = call(f"{url}/console/static/console.js")
        check("the console's script, as the virtualenv serves it",
              page == call(f"http://127.0.0.1:{venv_port}/console/static/console.js"))  # fmt: skip
        body, headers = form(couple, api_key=key, userid="Smoke")
        call(f"{url}/v1/vision/face/register", body, headers)
        print("after podman restart:")
        podman("restart", "-t", "30", NAME)
        wait_ready(url)
        check("the key works", bool(answers(url, key, photo)["native"]))
        login = json.dumps({"username": "smoke", "password": "smoke password"}).encode()
        token = json.loads(call(f"{url}/api/v1/login", login, {"Content-Type": "application/json"}))
        check("the user logs in", "access_token" in token)
        body, headers = form(couple, api_key=key)
        faces = json.loads(call(f"{url}/v1/vision/face/list", body, headers))["faces"]
        check("the enrolled face is known", faces == ["Smoke"])
        print("podman stop with requests in flight:")
        results: list[bool] = []
        raw = {"X-API-Key": key, "Content-Type": "image/jpeg"}

        def slow() -> None:
            try:
                got = call(f"{url}/api/v1/detect?models={MODELS}", couple, raw)
                results.append(b'"detections"' in got)
            except OSError:
                results.append(False)

        threads = [threading.Thread(target=slow) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        stopped = time.perf_counter()
        podman("stop", "-t", "30", NAME)
        for t in threads:
            t.join(60)
        check(f"{len(results)} answered 200 (stop took {time.perf_counter() - stopped:.1f} s)",
              len(results) == 3 and all(results))  # fmt: skip
    finally:
        venv.terminate()
        venv.wait(30)
        podman("rm", "-f", "-v", NAME, check=False)
        shutil.rmtree(work, ignore_errors=True)
    failures += replicas(tag, photo, couple)
    shutil.rmtree(settings.parent, ignore_errors=True)
    print("OK" if not failures else f"{failures} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
