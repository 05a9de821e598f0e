"""The seams of the house: a dialect is one module and one line, `mlapi detect` loads no
server, attributes have one definition, state sits behind the stores' protocols."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers import LiveServer

from mlapi import attributes, dialects
from mlapi.config import ServerConfig
from mlapi.dialect import dialect_of
from mlapi.engine import Engine
from mlapi.store import ModelStore

SERVER_ONLY = {"aiohttp", "jwt", "argon2", "tinydb"}

# The smallest real dialect, as the README shows it: objects counted by label at /count.
COUNTING = """
from aiohttp import web

from mlapi.dialect import Dialect
from mlapi.server import add_post, json_text, read_upload, run_detection


async def count(request: web.Request) -> web.Response:
    upload = await read_upload(request)
    result = await run_detection(request, upload.image, ["objects"], None)
    labels = sorted({d.label for d in result.detections})
    return json_text({l: sum(d.label == l for d in result.detections) for l in labels})


def add_routes(app: web.Application) -> None:
    add_post(app, "/count", count)


DIALECT = Dialect(
    "counting", ("/count",), add_routes, error_body=lambda s, m, c: {"problem": m}
)
"""


@pytest.fixture
def counting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A dialect added the documented way: its module, and one line in MODULES."""
    (tmp_path / "mlapi_counting.py").write_text(textwrap.dedent(COUNTING))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(dialects.MODULES, "counting", "mlapi_counting")
    yield
    sys.modules.pop("mlapi_counting", None)


def test_a_new_dialect_is_one_module_and_one_line(counting: None, tmp_path: Path) -> None:
    import ipaddress

    lan = (ipaddress.ip_network("127.0.0.1/32"),)
    config = ServerConfig(models=(), keyless_networks=lan, keyless_dialects=("counting",))
    jpeg = {"Content-Type": "image/jpeg"}
    with Engine(ModelStore(tmp_path / "cache")) as engine:
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


def test_the_dialect_is_found_by_its_longest_prefix() -> None:
    loaded = {d.name: d for d in dialects.load()}
    assert tuple(loaded) == dialects.NAMES
    assert dialect_of(loaded.values(), "/v1/vision/face/recognize") is loaded["deepstack"]
    assert dialect_of(loaded.values(), "/api/v1/recognition/faces") is loaded["compreface"]
    assert dialect_of(loaded.values(), "/api/v1/detect") is loaded["native"]
    assert dialect_of(loaded.values(), "/api/v1/infer") is loaded["zoneminder"]
    assert dialect_of(loaded.values(), "/health") is None
    assert loaded["deepstack"].form_key == "api_key"


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
