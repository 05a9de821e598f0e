"""The model store: checksums refuse bad files, verify catches tampering, imports work."""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from aiohttp import web

from mlapi.errors import ChecksumMismatch, MlapiError, ModelMissing
from mlapi.store import ModelCache, catalog
from mlapi.store.canonical import canonicalise
from mlapi.store.catalog import ModelEntry, Source, SourceFile
from mlapi.store.sources import sha256_file


def local_entry(path: Path, sha256: str) -> ModelEntry:
    return ModelEntry(
        "local-test",
        "objects",
        "a local file",
        "MIT",
        "onnx",
        Source("file"),
        (SourceFile(str(path), sha256, path.stat().st_size),),
    )


def test_checksum_mismatch_refuses_the_file(tmp_path: Path) -> None:
    src = tmp_path / "model.onnx"
    src.write_bytes(b"not the model you expected")
    store = ModelCache(tmp_path / "cache")
    with pytest.raises(ChecksumMismatch, match="does not match"):
        store.pull_entry(local_entry(src, "0" * 64))
    assert not store.is_pulled("local-test")
    assert not (store.models / "local-test" / "model.onnx").exists()


def test_matching_checksum_is_pulled_and_verified(tmp_path: Path) -> None:
    src = tmp_path / "model.onnx"
    src.write_bytes(b"model bytes")
    store = ModelCache(tmp_path / "cache")
    store.pull_entry(local_entry(src, hashlib.sha256(b"model bytes").hexdigest()))
    assert store.is_pulled("local-test") and store.verify("local-test") == []


def test_verify_catches_a_tampered_catalog_model(store: ModelCache, tmp_path: Path) -> None:
    copy = ModelCache(tmp_path / "cache")
    shutil.copytree(store.models / "res10-ssd", copy.models / "res10-ssd")
    assert copy.verify("res10-ssd") == []
    with open(copy.models / "res10-ssd" / "deploy.prototxt", "a") as fh:
        fh.write("# tampered\n")
    assert copy.verify("res10-ssd") == ["res10-ssd: deploy.prototxt does not match its sha256"]


def test_missing_model_names_the_command_to_fetch_it(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing, match="mlapi models pull nanodet"):
        ModelCache(tmp_path / "empty").model_dir("nanodet")


def test_import_rejects_bad_names_and_formats(tmp_path: Path) -> None:
    store = ModelCache(tmp_path / "cache")
    weird = tmp_path / "model.pt"
    weird.write_bytes(b"x")
    with pytest.raises(MlapiError, match=r"expected an \.onnx"):
        store.import_file(weird, "mine")
    with pytest.raises(MlapiError, match="catalog model"):
        store.import_file(weird, "nanodet")
    with pytest.raises(MlapiError, match="lower-case"):
        store.import_file(weird, "../escape")
    assert not (store.models / "mine").exists()


def test_statuses_list_catalog_and_imported_models(store: ModelCache) -> None:
    rows = {r.name: r for r in store.statuses()}
    assert rows["nanodet"].pulled and rows["nanodet"].default and rows["nanodet"].task == "objects"
    assert rows["yolov3-tiny"].source == "url"


class RangeFileServer:
    """A loopback HTTP server for one file that honours Range requests (and records them)."""

    def __init__(self, path: Path) -> None:
        self.ranges: list[str | None] = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()

        async def handle(request: web.Request) -> web.StreamResponse:
            self.ranges.append(request.headers.get("Range"))
            return web.FileResponse(path)

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            app = web.Application()
            app.router.add_get("/model.bin", handle)
            runner = web.AppRunner(app)
            self.loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            self.loop.run_until_complete(site.start())
            self.url = f"http://127.0.0.1:{runner.addresses[0][1]}/model.bin"
            ready.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        ready.wait(30)


def test_url_download_resumes_a_partial_file_and_checks_it(tmp_path: Path) -> None:
    payload = bytes(range(256)) * 8000  # 2 MB
    source = tmp_path / "served.bin"
    source.write_bytes(payload)
    server = RangeFileServer(source)
    store = ModelCache(tmp_path / "cache")
    entry = ModelEntry(
        "url-test",
        "objects",
        "a URL model",
        "MIT",
        "onnx",
        Source("url"),
        (SourceFile(server.url, hashlib.sha256(payload).hexdigest(), len(payload)),),
    )
    folder = store.models / "url-test"
    folder.mkdir(parents=True)
    (folder / "model.bin.part").write_bytes(payload[:700_000])  # an interrupted download
    seen: list[tuple[int, int | None]] = []
    store.pull_entry(entry, lambda name, done, total: seen.append((done, total)))
    assert server.ranges == ["bytes=700000-"]
    assert (folder / "model.bin").read_bytes() == payload and store.verify("url-test") == []
    assert seen[-1] == (len(payload), len(payload))

    bad = ModelEntry(
        "url-bad",
        "objects",
        "wrong checksum",
        "MIT",
        "onnx",
        Source("url"),
        (SourceFile(server.url, "0" * 64, len(payload)),),
    )
    with pytest.raises(ChecksumMismatch):
        store.pull_entry(bad)
    assert not (store.models / "url-bad" / "model.bin").exists()


def test_a_model_made_by_an_older_recipe_is_stale(store: ModelCache, tmp_path: Path) -> None:
    copy = ModelCache(tmp_path / "cache")
    shutil.copytree(store.models / "emotion", copy.models / "emotion")
    assert copy.is_pulled("emotion") and copy.verify("emotion") == []
    manifest = json.loads((copy.models / "emotion" / "manifest.json").read_text())
    manifest["fingerprint"] = "0" * 16  # as if the catalog's recipe had changed since
    (copy.models / "emotion" / "manifest.json").write_text(json.dumps(manifest))
    assert not copy.is_pulled("emotion")
    assert "emotion: made by an older recipe; run: mlapi models pull emotion" in copy.verify(
        "emotion"
    )


def test_a_bundled_model_answers_after_the_cache_and_cannot_be_removed(
    store: ModelCache, tmp_path: Path
) -> None:
    bundle = tmp_path / "bundle"
    for name in ("emotion", "nanodet"):  # a bundle holds what runs: manifest and artifact
        (bundle / name).mkdir(parents=True)
        for f in ("manifest.json", store.artifact(name).name):
            shutil.copyfile(store.model_dir(name) / f, bundle / name / f)
    copy = ModelCache(tmp_path / "cache", bundled=[bundle])
    shutil.copytree(store.models / "emotion", copy.models / "emotion")
    assert copy.model_dir("emotion") == copy.models / "emotion"  # the user's cache first
    assert copy.model_dir("nanodet") == bundle / "nanodet"
    assert copy.is_bundled("nanodet") and not copy.is_bundled("emotion")
    assert copy.verify("nanodet") == []  # the TF.js sources are not needed to run
    statuses = {s.name: s for s in copy.statuses()}
    assert statuses["nanodet"].bundled and statuses["nanodet"].pulled
    assert not copy.is_pulled("faces-none") and not copy.is_pulled("faceres")
    with pytest.raises(MlapiError, match="bundled with this install"):
        copy.remove("nanodet")
    assert copy.pull("nanodet") == bundle / "nanodet"  # nothing to fetch
    assert not (copy.models / "nanodet").exists()
    copy.remove("emotion")
    assert copy.model_dir("emotion") == bundle / "emotion"


def test_the_bundled_folders_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLAPI_BUNDLED_MODELS", "/opt/a:/opt/b")
    assert ModelCache(Path("/nonexistent")).bundled[:2] == [Path("/opt/a"), Path("/opt/b")]


def test_converted_models_have_the_catalog_sha256(store: ModelCache) -> None:
    for entry in catalog.CATALOG:
        if entry.default and entry.built:
            assert entry.artifact_sha256, entry.name
            assert sha256_file(store.artifact(entry.name)) == entry.artifact_sha256, entry.name


def test_canonical_form_does_not_depend_on_generated_names(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    def graph(names: list[str], order: list[int]) -> Path:
        weight = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 4), names[0])
        nodes = [
            helper.make_node("MatMul", ["x", names[0]], [names[1]], name=names[2]),
            helper.make_node("Relu", [names[1]], ["relu_out"], name=names[3]),
            helper.make_node("Sigmoid", [names[1]], ["sig_out"], name=names[4]),
        ]
        g = helper.make_graph(
            [nodes[i] for i in order],
            "g",
            [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["unk__9", 1])],
            [
                helper.make_tensor_value_info("relu_out", TensorProto.FLOAT, None),
                helper.make_tensor_value_info("sig_out", TensorProto.FLOAT, None),
            ],
            [weight],
            doc_string="converted from /tmp/xyz",
        )
        path = tmp_path / f"{names[0]}.onnx"
        onnx.save(helper.make_model(g), str(path))
        return path

    a = graph(["w__1", "mm__2", "n__3", "n__4", "n__5"], [0, 1, 2])
    b = graph(["w__7", "mm__9", "n__8", "n__6", "n__10"], [0, 2, 1])
    assert a.read_bytes() != b.read_bytes()
    canonicalise(a, tmp_path / "a.onnx")
    canonicalise(b, tmp_path / "b.onnx")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()


def test_members_of_one_archive_come_out_in_one_pass(tmp_path: Path) -> None:
    import io
    import tarfile

    from mlapi.errors import FetchError
    from mlapi.store.sources import extract_members

    archive = tmp_path / "package.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, body in (("package/a.bin", b"a" * 3000), ("package/b.json", b"{}")):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
    first, second, third = tmp_path / "one" / "a.bin", tmp_path / "two" / "a.bin", tmp_path / "b"
    for folder in (first.parent, second.parent):
        folder.mkdir()
    extract_members(archive, {"package/a.bin": [first, second], "package/b.json": [third]})
    assert first.read_bytes() == second.read_bytes() == b"a" * 3000
    assert third.read_bytes() == b"{}"
    with pytest.raises(FetchError, match=r"package\.tgz has no file package/missing"):
        extract_members(archive, {"package/missing": [tmp_path / "m"]})
    assert not (tmp_path / "m").exists()
