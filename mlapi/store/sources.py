"""Fetch source archives and files: PyPI (pip download), npm (npm pack), URLs, local files.

Uses the machine's configured `pip` and `npm` clients, so their mirrors and proxies apply.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from mlapi.errors import ChecksumMismatch, FetchError
from mlapi.store.catalog import Source

Progress = Callable[[int, int | None], None]  # (bytes done, total or None)
CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str) -> None:
    actual = sha256_file(path)
    if expected and actual != expected:
        raise ChecksumMismatch(
            f"{path.name}: sha256 {actual} does not match the expected {expected}; file refused"
        )


def _run(cmd: list[str], cwd: Path) -> str:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise FetchError(f"{cmd[0]} is not installed: {exc}") from exc
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise FetchError(f"{' '.join(cmd[:3])} failed: {' | '.join(tail)}")
    return done.stdout


def pip_python() -> str:
    """The Python whose pip downloads PyPI packages: this one, or inside a binary built by
    PyInstaller (where sys.executable is mlapi itself) a python3 from PATH."""
    if not getattr(sys, "frozen", False):
        return sys.executable
    found = shutil.which("python3")
    if found is None:
        raise FetchError("downloading from PyPI needs a python3 with pip on PATH")
    return found


def _pip_download(spec: str, work: Path, progress: Progress | None) -> None:
    """`pip download` with its byte counts passed on (pip's raw progress bar, pip 24.1+)."""
    cmd = [pip_python(), "-m", "pip", "download", "--no-deps", "-d", str(work), spec]
    try:
        child = subprocess.Popen(
            [*cmd, "--progress-bar", "raw"],
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    except FileNotFoundError as exc:
        raise FetchError(f"{cmd[0]} is not installed: {exc}") from exc
    tail: list[str] = []
    assert child.stdout is not None
    for line in child.stdout:
        if line.startswith("Progress ") and progress:  # "Progress DONE of TOTAL"
            words = line.split()
            progress(int(words[1]), int(words[3]) or None)
        else:
            tail = [*tail[-2:], line.strip()]
    if child.wait() != 0:
        if any("raw" in line and "invalid choice" in line for line in tail):
            _run([*cmd, "--quiet"], work)  # an older pip: no byte counts
            return
        raise FetchError(f"pip download {spec} failed: {' | '.join(tail)}")


def fetch_package(source: Source, downloads: Path, progress: Progress | None = None) -> Path:
    """Download a PyPI or npm package archive into `downloads` (once) and return its path.

    `progress` hears the bytes of a PyPI download; npm pack reports none."""
    downloads.mkdir(parents=True, exist_ok=True)
    if source.kind == "pypi":
        stem = f"{source.package.replace('-', '_')}-{source.version}"
        alt = f"{source.package}-{source.version}"
        found = [p for p in downloads.iterdir() if p.name.startswith((stem, alt))]
        if not found:
            work = downloads / f".pip-{os.getpid()}"
            work.mkdir(exist_ok=True)
            _pip_download(f"{source.package}=={source.version}", work, progress)
            for item in work.iterdir():
                item.replace(downloads / item.name)
            shutil.rmtree(work, ignore_errors=True)
            found = [p for p in downloads.iterdir() if p.name.startswith((stem, alt))]
        if not found:
            raise FetchError(f"pip download gave no archive for {source.describe()}")
        archive = found[0]
    elif source.kind == "npm":
        name = source.package.lstrip("@").replace("/", "-")
        archive = downloads / f"{name}-{source.version}.tgz"
        if not archive.exists():
            out = _run(
                [
                    "npm",
                    "pack",
                    "--silent",
                    f"{source.package}@{source.version}",
                    "--pack-destination",
                    str(downloads),
                ],
                downloads,
            )
            produced = downloads / out.strip().splitlines()[-1]
            if produced != archive:
                produced.replace(archive)
    else:
        raise FetchError(f"not a package source: {source.kind}")
    if source.sha256:
        check_sha256(archive, source.sha256)
    return archive


def extract_member(archive: Path, member: str, dest: Path) -> None:
    """Copy one member of a .tgz/.tar.gz/.whl/.zip archive to `dest`."""
    extract_members(archive, {member: [dest]})


def extract_members(archive: Path, wanted: dict[str, list[Path]]) -> None:
    """Copy each wanted member of an archive to its destinations, in one pass: a .tgz is
    read as a stream, once, up to the last member wanted (looking members up by name would
    decompress it from the start for each, seconds apiece for a 150 MB package)."""
    todo = dict(wanted)

    def write(src: IO[bytes], dests: list[Path]) -> None:
        first = dests[0]
        tmp = first.with_name(first.name + ".part")
        with open(tmp, "wb") as out:
            shutil.copyfileobj(src, out, CHUNK)
        for other in dests[1:]:
            shutil.copyfile(tmp, other)
        tmp.replace(first)

    if archive.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            for member in list(todo):
                if member in names:
                    with zf.open(member) as src:
                        write(src, todo.pop(member))
    else:
        with tarfile.open(archive, "r|*") as tf:
            for info in tf:
                if not todo:
                    break
                if info.name in todo and info.isfile():
                    found = tf.extractfile(info)
                    assert found is not None
                    with found:
                        write(found, todo.pop(info.name))
    if todo:
        raise FetchError(f"{archive.name} has no file {next(iter(todo))}")


def download_url(
    url: str, dest: Path, progress: Progress | None = None, timeout: float = 30
) -> None:
    """Download `url` to `dest`, resuming a partial `.part` file with a Range request."""
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": "mlapi"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            if have and response.status != 206:  # server ignored Range: start again
                have = 0
            length = response.headers.get("Content-Length")
            total = have + int(length) if length else None
            with open(part, "ab" if have else "wb") as out:
                done = have
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    done += len(chunk)
                    if progress:
                        progress(done, total)
    except OSError as exc:
        raise FetchError(f"download of {url} failed ({exc}); run the pull again to resume") from exc
    part.replace(dest)
