"""The seams of the house: a dialect is a package of its own found through an entry point
and imports only the server's kit, every route says whose it is, `mlapi detect` loads no
server, attributes have one definition, state sits behind the stores' protocols."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import LiveServer

import mlapi
from mlapi import attributes
from mlapi.config import ServerConfig
from mlapi.engine import Engine
from mlapi.store import ModelCache
from mlapi.web.dialect import ROUTES, installed

SERVER_ONLY = {"aiohttp", "jwt", "argon2", "tinydb"}

# The smallest real dialect, as docs/architecture.md shows it: objects counted by label.
COUNTING = """
from aiohttp import web

from mlapi.web.kit import Dialect, Routes, json_text, read_upload, run_detection


async def count(request: web.Request) -> web.Response:
    upload = await read_upload(request)
    result = await run_detection(request, upload.image, ["objects"], None)
    labels = sorted({d.label for d in result.detections})
    return json_text({l: sum(d.label == l for d in result.detections) for l in labels})


def add_routes(routes: Routes) -> None:
    routes.post("/count", count)


DIALECT = Dialect("counting", add_routes, error_body=lambda s, m, c: {"problem": m})
"""


@pytest.fixture
def counting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A dialect installed as a package of its own: its module and its distribution's
    entry point in `mlapi.dialects`, nothing edited in mlapi."""
    site = tmp_path / "site"
    (site / "mlapi_counting").mkdir(parents=True)
    (site / "mlapi_counting" / "__init__.py").write_text(textwrap.dedent(COUNTING))
    info = site / "mlapi_counting-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mlapi-counting\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[mlapi.dialects]\ncounting = mlapi_counting:DIALECT\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield
    sys.modules.pop("mlapi_counting", None)


def test_a_dialect_package_installs_through_its_entry_point(counting: None, tmp_path: Path) -> None:
    import ipaddress

    assert "counting" in installed()
    lan = (ipaddress.ip_network("127.0.0.1/32"),)
    config = ServerConfig(models=(), keyless_networks=lan, keyless_dialects=("counting",))
    jpeg = {"Content-Type": "image/jpeg"}
    with Engine(ModelCache(tmp_path / "cache")) as engine:
        server = LiveServer(engine, tmp_path / "data", config)
        try:
            keyless = server.call("POST", "/count", b"", jpeg)  # its paths open to the LAN
            native = server.call("POST", "/api/v1/detect", b"", jpeg)  # and no other
            document = json.loads(server.call("GET", "/api/v1/openapi.json").body)
        finally:
            server.stop()
    # Past authentication, its own error body; the native dialect's own body and 401.
    assert keyless.status == 400
    assert keyless.json() == {"problem": "no image: send a multipart 'file' field or a raw body"}
    assert native.status == 401 and native.json()["msg"] == "Missing Authorization Header"
    assert "/count" in document["paths"]


def test_every_route_says_whose_it_is_and_who_may_call_it(tmp_path: Path) -> None:
    with Engine(ModelCache(tmp_path / "cache")) as engine:
        server = LiveServer(engine, tmp_path / "data", ServerConfig(models=()))
        server.stop()
    declared = server.app[ROUTES]
    owner = {
        (resource.canonical, method): info.dialect.name
        for (resource, method), info in declared.items()
    }
    assert owner[("/v1/vision/face/recognize", "POST")] == "deepstack"
    assert owner[("/api/v1/recognition/faces", "GET")] == "compreface"
    assert owner[("/api/v1/detect", "POST")] == "native"
    assert owner[("/api/v1/detect/object", "POST")] == "mlapi"
    assert owner[("/api/v1/infer", "POST")] == "zoneminder"
    assert owner[("/hg/{key}/objects", "POST")] == "homegallery"
    assert owner[("/health", "GET")] == "core"
    assert owner[("/console/api/keys", "GET")] == "console"
    routed = {
        (route.resource.canonical, route.method)
        for route in server.app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    assert routed == set(owner)  # no route without its dialect and access
    access = {key: info.access for key, info in declared.items()}
    assert {k[0].canonical for k, a in access.items() if a == "public"} == {
        "/", "/console/static/{name}", "/console/api/signin", "/console/api/session",
        "/health", "/ready", "/api/v1/health", "/api/v1/login", "/api/v1/openapi.json",
    }  # fmt: skip


def test_dialects_use_only_the_servers_kit() -> None:
    """A dialect imports nothing of the server but mlapi.web.kit, so the server's insides
    can change without touching a dialect."""
    package = Path(mlapi.__file__).parent
    offending = []
    surfaces = [*(package / "dialects").rglob("*.py"), *(package / "console").rglob("*.py")]
    for path in sorted(surfaces):
        for node in ast.walk(ast.parse(path.read_text())):
            modules = []
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            elif isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            for module in modules:
                if module.startswith("mlapi.web") and module != "mlapi.web.kit":
                    offending.append(f"{path.relative_to(package)}: {module}")
    assert offending == []
    assert set(installed()) >= {"native", "mlapi", "deepstack", "console", "zoneminder"}


def test_detecting_loads_nothing_of_the_server() -> None:
    """The CLI's whole detect path (command, engine, renderers) without the server's
    web framework, token library, password hasher or database."""
    code = textwrap.dedent(
        """
        import sys
        from mlapi.cli import main
        import mlapi.cli.batch, mlapi.engine, mlapi.render, mlapi.attributes
        from mlapi.render import FORMATS
        from mlapi.result import Detection, Result
        attrs = attributes.gender_age("female", 0.8, 31.0, "dlib")
        face = Detection("face", 0.9, (1, 2, 3, 4), "faces", attributes=attrs)
        print([FORMATS[f](Result(8, 8, (face,))) for f in FORMATS])
        print(sorted({m.split(".")[0] for m in sys.modules}))
        """
    ).replace("attributes.gender_age", "mlapi.attributes.gender_age")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert "'gender': 'woman'" in out[0]
    assert not SERVER_ONLY & set(json.loads(out[1].replace("'", '"')))


def test_detect_on_a_photo_loads_nothing_of_the_server(photos: Path) -> None:
    code = (
        "import atexit, sys\n"
        "atexit.register(lambda: print(sorted({m.split('.')[0] for m in sys.modules}),"
        " file=sys.stderr))\n"
        "from mlapi.cli import main\n"
        f"main(['detect', {str(photos / 'object_detection_input.jpg')!r}])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["detections"], done.stdout
    loaded = json.loads(done.stderr.strip().splitlines()[-1].replace("'", '"'))
    assert not SERVER_ONLY & set(loaded)


def test_the_schema_lists_every_known_attribute() -> None:
    schema = json.loads(
        (Path(attributes.__file__).parent / "schema" / "result.schema.json").read_text()
    )
    listed = schema["properties"]["detections"]["items"]["properties"]["attributes"]
    assert list(listed["properties"]) == list(attributes.KNOWN)
    assert listed["properties"] == attributes.SCHEMA


def test_serve_offers_every_setting_once_as_docs_list_them() -> None:
    """Settings are declared once (mlapi.config.setting): `mlapi serve`'s options and
    docs/settings.md come from the dataclasses, each dialect's own settings included."""
    from click.testing import CliRunner

    from mlapi.cli import main
    from mlapi.cli.serve import SETTINGS
    from mlapi.cli.settings import markdown

    listed = (Path(mlapi.__file__).parent.parent / "docs" / "settings.md").read_text()
    assert listed.endswith(markdown(SETTINGS))
    shown = CliRunner().invoke(main, ["serve", "--help"], terminal_width=200).output
    for option in ("--max-body-mb", "--zm-portal", "--zm-password-file", "--db-timeout",
                   "--trusted-proxies", "--keyless-dialects"):  # fmt: skip
        assert option in shown and option in listed
    assert "mlapi" in {name for _, prefix in SETTINGS if (name := prefix.rstrip("_"))}
