"""Known plates (issue 35, items 2 and 3): names for plates and patterns in both stores,
`mlapi plates`, the native routes, and a car photo through every client's shape
(CodeProject.AI's ALPR module as Frigate's plate recogniser reads it, pyzm's gateway, the
seed mlapi and zm_detect, mlapi's own), on a real server with the real models."""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import requests
from helpers import run_mlapi
from pyzm.ml.remote import GatewayClient
from servers import Answer, LiveServer
from test_ocr import eval_photos  # noqa: F401 (a fixture: the labelled plate photos)

from mlapi.config import ServerConfig
from mlapi.engine import Engine
from mlapi.errors import PlateError, PlateTaken, UnknownPlate
from mlapi.result import Detection, Result
from mlapi.store import ModelCache
from mlapi.stores import KnownPlate, Stores, open_stores
from mlapi.stores.matching import PlateIndex, within_one_edit
from mlapi.stream.changes import ChangeTracker, seen_objects

PASSWORD = "plates password"
CAR = "test_image.png"  # fast-alpr's parked Skoda: plate 5AU 5341 (bench/eval/plates-text.json)
JSON = {"Content-Type": "application/json"}


# -- fast tier: matching, the stores, the CLI and the routes without models ---------------
def test_a_plate_within_one_edit_or_matched_by_a_pattern_is_named() -> None:
    assert within_one_edit("5AU5341", "5AU5341") and within_one_edit("5AU5341", "5AU5841")
    assert within_one_edit("5AU5341", "5AU534") and within_one_edit("5AU5341", "5AU53411")
    assert within_one_edit("AU5341", "5AU5341") and not within_one_edit("5AU5341", "5UA5341")
    assert not within_one_edit("5AU5341", "5AU53") and not within_one_edit("ABC", "XYZ")
    index = PlateIndex(
        [
            KnownPlate("ann", plate="5AU5341"),
            KnownPlate("bob", plate="5AU5347"),
            KnownPlate("fleet", pattern="FLEET[0-9]{3}"),
            KnownPlate("czech", pattern="[0-9][A-Z]{2}[0-9]{4}"),
        ]
    )

    def named(reading: str) -> str | None:
        found = index.match(reading)
        return found.name if found else None

    assert named("5AU 5341") == "ann"  # read with a space: compared on letters and digits
    assert named("5au-5341") == "ann" and named("5AU5347") == "bob"  # exact beats one edit
    assert named("5AU541") == "ann"  # a character missed: ann's alone is one edit away
    assert named("5AU5349") is None  # one edit from both ann's and bob's: neither
    assert named("FLEET042") == "fleet" and named("XFLEET042") is None  # a full match only
    assert named("7XY1234") == "czech" and named("ZZZ999") is None and named("··") is None


@pytest.fixture(params=["files", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Stores, Stores]]:
    """Both implementations, each opened twice (two replicas, or the CLI beside a server)."""
    if request.param == "files":
        one, two = open_stores(tmp_path), open_stores(tmp_path)
    else:
        url = request.getfixturevalue("database")
        one, two = open_stores(database=url), open_stores(database=url)
    yield one, two
    one.close()
    two.close()


def test_known_plates_keep_their_promises(stores: tuple[Stores, Stores]) -> None:
    plates, other = stores[0].plates, stores[1].plates
    assert plates.known() == [] and plates.match("5AU5341") is None
    added = plates.add(" Ann ", plate="5au-534 1")
    assert (added.name, added.plate, added.pattern) == ("Ann", "5AU5341", "")
    assert plates.add("Ann", plate="5AU 5341") == added  # already there: no change
    with pytest.raises(PlateTaken, match="already known as 'Ann'") as taken:
        plates.add("Bob", plate="5AU5341")
    assert taken.value.status == 409
    plates.add("Ann", plate="1AB 2345")  # a second car
    fleet = plates.add("Fleet", pattern="FLEET[0-9]{3}")
    assert fleet.pattern == "FLEET[0-9]{3}" and fleet.plate == ""
    assert [(k.name, k.plate, k.pattern) for k in plates.known()] == [
        ("Ann", "5AU5341", ""),
        ("Ann", "1AB2345", ""),
        ("Fleet", "", "FLEET[0-9]{3}"),
    ]
    assert (plates.match("5AU5841") or fleet).name == "Ann"  # one edit away
    assert (plates.match("FLEET007") or added).name == "Fleet"
    assert plates.match("5AV5841") is None  # two edits
    time.sleep(1.1)  # a replica re-reads the known plates after a second at most
    assert (other.match("1AB2346") or fleet).name == "Ann"
    assert [k.name for k in other.known()] == ["Ann", "Ann", "Fleet"]
    assert other.remove("Ann") == 2
    assert plates.match("5AU5341") is None and [k.name for k in plates.known()] == ["Fleet"]
    with pytest.raises(UnknownPlate) as unknown:
        plates.remove("Ann")
    assert unknown.value.status == 404
    assert plates.add("Bob", plate="5AU5341").name == "Bob"  # free again


@pytest.mark.parametrize(
    ("name", "plate", "pattern", "message"),
    [
        ("Ann", "", "[A-Z", "the pattern is not a regular expression"),
        ("Ann", "", "A" * 201, "longer than 200 characters"),
        ("Ann", "", "", "give a plate or a pattern"),
        ("Ann", "AB12", "AB.*", "give a plate or a pattern"),
        ("Ann", "AB_12", "", "a plate is 1-16 letters A-Z and digits"),
        ("Ann", "ÄB12", "", "a plate is 1-16 letters A-Z and digits"),
        ("Ann", "A" * 17, "", "a plate is 1-16 letters A-Z and digits"),
        ("", "AB12", "", "a plate's name is 1-100 characters"),
        ("a/b", "AB12", "", "without / or"),
        ("Ann\x00", "AB12", "", "a plate's name contains control characters"),
        ("\u202eennA", "AB12", "", "change the text's direction"),
        ("Ann", "", "AB\u202e12", "the pattern contains characters that change"),
        ("\ud800", "AB12", "", "not valid text"),
    ],
)
def test_bad_names_plates_and_patterns_are_refused(
    tmp_path: Path, name: str, plate: str, pattern: str, message: str
) -> None:
    plates = open_stores(tmp_path).plates
    with pytest.raises(PlateError, match=message) as refused:
        plates.add(name, plate=plate, pattern=pattern)
    assert refused.value.status == 400
    assert plates.known() == [] and not (tmp_path / "plates.json").exists()


@pytest.mark.parametrize("where", ["files", "postgres"])
def test_mlapi_plates_add_list_remove(where: str, request: pytest.FixtureRequest) -> None:
    database = ["--database", request.getfixturevalue("database")] if where == "postgres" else []
    added = run_mlapi(["plates", "add", "Ann", "5AU 5341", *database])
    assert added.returncode == 0, added.stderr
    assert added.stderr.strip() == "added plate 5AU5341 of Ann"
    pattern = run_mlapi(["plates", "add", "Fleet", "FLEET[0-9]{3}", *database])
    assert pattern.stderr.strip() == "added pattern FLEET[0-9]{3} of Fleet"
    literal = run_mlapi(["plates", "add", "Dots", "AB.12", "--pattern", *database])
    assert literal.stderr.strip() == "added pattern AB.12 of Dots"
    listed = run_mlapi(["plates", "list", *database])
    assert listed.stdout.splitlines() == [
        "Ann\tplate\t5AU5341",
        "Dots\tpattern\tAB.12",
        "Fleet\tpattern\tFLEET[0-9]{3}",
    ]
    taken = run_mlapi(["plates", "add", "Bob", "5AU5341", *database])
    assert taken.returncode == 1 and "plate 5AU5341 is already known as 'Ann'" in taken.stderr
    bad = run_mlapi(["plates", "add", "Bob", "[A-Z", *database])
    assert bad.returncode == 1 and "the pattern is not a regular expression" in bad.stderr
    removed = run_mlapi(["plates", "remove", "Fleet", *database])
    assert (
        removed.returncode == 0 and "removed 1 plate(s) and pattern(s) of Fleet" in removed.stderr
    )
    again = run_mlapi(["plates", "remove", "Fleet", *database])
    assert again.returncode == 1 and "no known plate named 'Fleet'" in again.stderr
    assert run_mlapi(["plates", "list", *database]).stdout.count("\n") == 2


@pytest.fixture
def bare(tmp_path: Path) -> Iterator[LiveServer]:
    """A server without models (the plate routes need none), and a key for it."""
    with Engine(ModelCache(tmp_path / "cache")) as engine:
        live = LiveServer(engine, tmp_path / "data", ServerConfig(models=()))
        live.users.add("ann", PASSWORD)
        live.key = live.users.create_key("ann", "script")
        yield live
        live.stop()


def call(server: LiveServer, method: str, path: str, document: Any = None) -> Answer:
    body = None if document is None else json.dumps(document).encode()
    headers = {"X-API-Key": server.key, **(JSON if body is not None else {})}
    return server.call(method, path, body, headers)


def test_the_plate_routes(bare: LiveServer, no_server_errors: None) -> None:
    assert call(bare, "GET", "/api/v1/plates").json() == {"plates": []}
    added = call(bare, "POST", "/api/v1/plates", {"name": "Ann", "plate": "5AU 5341"})
    assert added.status == 200 and added.json() == {"name": "Ann", "plate": "5AU5341"}
    fleet = call(bare, "POST", "/api/v1/plates", {"name": "Our fleet", "pattern": "FLEET[0-9]+"})
    assert fleet.json() == {"name": "Our fleet", "pattern": "FLEET[0-9]+"}
    assert call(bare, "GET", "/api/v1/plates").json() == {
        "plates": [
            {"name": "Ann", "plate": "5AU5341"},
            {"name": "Our fleet", "pattern": "FLEET[0-9]+"},
        ]
    }
    assert bare.stores.plates.match("5AU5841") == KnownPlate(
        "Ann", "5AU5341", "", bare.stores.plates.known()[0].created
    )  # the server's stores, which its engine names plates from
    taken = call(bare, "POST", "/api/v1/plates", {"name": "Bob", "plate": "5AU-5341"})
    assert taken.status == 409 and "already known as 'Ann'" in taken.json()["msg"]
    gone = call(bare, "DELETE", "/api/v1/plates/Our%20fleet")
    assert gone.status == 200 and gone.json() == {"removed": 1}
    missing = call(bare, "DELETE", "/api/v1/plates/Our%20fleet")
    assert missing.status == 404
    assert missing.json() == {"code": 404, "msg": "no known plate named 'Our fleet'"}
    assert bare.call("GET", "/api/v1/plates").status == 401  # a key is needed
    document = json.loads(bare.call("GET", "/api/v1/openapi.json").body)
    assert set(document["paths"]["/api/v1/plates"]) == {"get", "post"}
    assert document["paths"]["/api/v1/plates/{name}"]["delete"]["parameters"][0]["name"] == "name"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"name": "Ann", "pattern": "[A-Z"}, "the pattern is not a regular expression"),
        ({"name": "Ann", "pattern": "(" * 201}, "the pattern is longer than 200 characters"),
        ({"name": "Ann", "plate": "AB 12", "pattern": "AB.*"}, "give a plate or a pattern"),
        ({"name": "Ann"}, "give a plate or a pattern"),
        ({"name": "Ann\u202e", "plate": "AB12"}, "change the text's direction"),
        ({"name": "An\u0007n", "plate": "AB12"}, "contains control characters"),
        ({"name": "\ud800", "plate": "AB12"}, "not valid text"),
        ({"name": "a/b", "plate": "AB12"}, "without / or"),
        ({"name": "Ann", "plate": "AB_12"}, "a plate is 1-16 letters A-Z and digits"),
        ({"name": "Ann", "plate": 12}, "name, plate and pattern are strings"),
        ({"name": "Ann", "plate": "AB12", "owner": "x"}, "unknown field owner"),
        (["Ann", "AB12"], "JSON body must be an object"),
    ],
)
def test_bad_plates_are_a_400(
    bare: LiveServer, document: Any, message: str, no_server_errors: None
) -> None:
    answer = call(bare, "POST", "/api/v1/plates", document)
    assert answer.status == 400 and message in answer.json()["msg"], answer.json()
    assert answer.json()["code"] == 400
    assert call(bare, "GET", "/api/v1/plates").json() == {"plates": []}


def test_stream_changes_only_sees_a_new_plate_where_the_box_is_the_same() -> None:
    def frame(*plates: str) -> Result:
        found = tuple(
            Detection("plate", 0.99, (304, 184, 392, 214), "plates", attributes={"plate": p})
            for p in plates
        )
        return Result(518, 331, found)

    tracker = ChangeTracker(0.5)
    assert tracker.changed(seen_objects(frame("5AU5341")))
    assert not tracker.changed(seen_objects(frame("5AU5341")))  # the same plate, still there
    assert tracker.changed(seen_objects(frame("5AU5431")))  # another plate in the same place
    assert tracker.changed(seen_objects(frame("5AU5431", "1AB2345")))  # one more plate
    assert tracker.changed(seen_objects(frame()))  # gone


# -- models tier: a car photo through every client's shape -------------------------------
@pytest.fixture(scope="module")
def server(store: ModelCache, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real server whose DeepStack routes are open to loopback without a key, as
    Frigate's plate recogniser (which sends none) would be let in from its network."""
    data = tmp_path_factory.mktemp("plates")
    loopback = (ipaddress.ip_network("127.0.0.1/32"),)
    config = ServerConfig(
        models=("plates",), keyless_networks=loopback, keyless_dialects=("deepstack",)
    )
    with Engine(store) as engine:
        live = LiveServer(engine, data, config)
        live.users.add("ann", PASSWORD)
        live.key = live.users.create_key("ann", "cameras")
        yield live
        live.stop()


@pytest.fixture
def car(eval_photos: dict[str, Path]) -> bytes:  # noqa: F811 (the fixture imported above)
    return eval_photos[CAR].read_bytes()


def native_plates(server: LiveServer, image: bytes) -> list[dict[str, Any]]:
    answer = server.upload("/api/v1/detect", {"file": image}, server.key, {"models": "plates"})
    assert answer.status == 200, answer.body
    return list(answer.json()["detections"])


def test_codeproject_alpr_answers_as_frigates_plate_recogniser_reads_it(
    server: LiveServer, car: bytes, photos: Path, no_server_errors: None
) -> None:
    # frigate_plate_recognizer is not on PyPI: what its recognize_with_code_project
    # (ljmerza/frigate_plate_recognizer, frigate_plate_recognizer/recognition.py) sends and
    # reads, as it does it: `session.post(api_url, files={"upload": image})` (no key, no
    # other field) and `response.raise_for_status()`; then `payload.get("predictions") or
    # []`, the first prediction's `.get("plate")` and `.get("confidence")` (compared with
    # its min_score as a number), and in check_watched_plates each prediction's
    # `.get("plate")` (lower-cased), `.get("candidate")` and `.get("confidence")`.
    # README: `code_project: api_url: http://HOST:32168/v1/image/alpr`.
    with requests.Session() as session:
        response = session.post(f"{server.url}/v1/image/alpr", files={"upload": car})
        response.raise_for_status()
        payload = response.json()
        predictions = payload.get("predictions") or []
        assert isinstance(predictions, list) and len(predictions) == 1
        top = predictions[0]
        assert top.get("plate") == "5AU5341" and top.get("plate").lower() == "5au5341"
        score = top.get("confidence")
        assert isinstance(score, float) and 0.9 < score <= 1 and not score < 0.8  # min_score
        assert top.get("candidate") is None  # it falls back to "candidate" only when no plate
        # CodeProject.AI's ALPR module's answer (codeproject/CodeProject.AI-ALPR: ALPR.py's
        # detections, ALPR_adapter.py's response), with the server's own fields.
        assert set(payload) == {
            "success", "predictions", "message", "processMs", "inferenceMs", "moduleId",
            "command", "code",
        }  # fmt: skip
        assert set(top) == {"confidence", "label", "plate", "x_min", "y_min", "x_max", "y_max"}
        assert payload["success"] is True and payload["code"] == 200
        assert (payload["moduleId"], payload["command"]) == ("ALPR", "alpr")
        assert top["label"] == "Plate: 5AU5341" and payload["message"] == "Found Plate: 5AU5341"
        assert all(isinstance(payload[k], int) for k in ("processMs", "inferenceMs"))
        assert 0 < payload["inferenceMs"] <= payload["processMs"]
        x1, y1, x2, y2 = (top[k] for k in ("x_min", "y_min", "x_max", "y_max"))
        assert all(isinstance(v, int) for v in (x1, y1, x2, y2))
        assert 295 < x1 < 315 and 175 < y1 < 195 and 380 < x2 < 400 and 205 < y2 < 225
        # CodeProject.AI's own path, with a DeepStack client's key and field.
        fields = {"api_key": server.key}
        vision = session.post(f"{server.url}/v1/vision/alpr", files={"image": car}, data=fields)
        assert vision.status_code == 200 and vision.json()["predictions"] == predictions
        nothing = (photos / "object_detection_input.jpg").read_bytes()
        empty = session.post(f"{server.url}/v1/image/alpr", files={"upload": nothing}).json()
        assert empty["success"] is True and empty["predictions"] == []
        assert empty["message"] == "No plates found"
        bad = session.post(f"{server.url}/v1/image/alpr", files={"upload": b"not an image"})
        assert bad.status_code == 400 and bad.json()["success"] is False


def test_pyzm_alpr_labels_each_plate_with_its_reading(server: LiveServer, car: bytes) -> None:
    frame = cv2.imdecode(np.frombuffer(car, np.uint8), cv2.IMREAD_COLOR)
    client = GatewayClient(f"{server.url}/api/v1", "ann", PASSWORD, timeout=60)
    (plate,) = client.infer(frame, "alpr", "mlapi plates", min_confidence=0.5)
    assert plate.label == "5AU5341" and plate.detection_type == "alpr"
    assert plate.model_name == "mlapi plates" and 0.9 < plate.confidence <= 1
    assert 295 < plate.bbox.x1 < 315 and 380 < plate.bbox.x2 < 400


def test_the_seed_and_zm_detect_read_type_alpr(server: LiveServer, car: bytes) -> None:
    token = server.token("ann", PASSWORD)
    seed = server.upload("/api/v1/detect/object?type=alpr", {"file": car}, token).json()
    assert [(item["type"], item["label"]) for item in seed] == [("plate", "5AU5341")]
    assert seed[0]["confidence"].endswith("%") and len(seed[0]["box"]) == 4
    zm = server.upload(
        "/api/v1/detect/object?type=alpr&response_format=zm_detect", {"file": car}, token
    ).json()
    assert zm["matched_data"]["labels"] == ["5AU5341"]
    assert zm["matched_data"]["model_names"] == ["plates"]


def test_a_known_plate_within_one_edit_and_a_pattern_name_the_plate(
    server: LiveServer, car: bytes
) -> None:
    (read,) = native_plates(server, car)
    assert read["attributes"] == {"plate": "5AU5341", "text": "5AU5341", "vehicle": "car"}
    added = call(server, "POST", "/api/v1/plates", {"name": "Neighbour", "plate": "5AU 5841"})
    assert added.status == 200  # one character off what is read
    try:
        (named,) = native_plates(server, car)
        assert named["attributes"]["name"] == "Neighbour"
        assert named["attributes"]["plate"] == "5AU5341"  # what was read, not what is known
        seed = server.upload("/api/v1/detect/object?type=alpr", {"file": car}, server.key).json()
        assert seed[0]["label"] == "5AU5341"  # the plate, as zm_detect matches patterns on it
    finally:
        call(server, "DELETE", "/api/v1/plates/Neighbour")
    call(server, "POST", "/api/v1/plates", {"name": "Far", "plate": "5AV5841"})  # two edits
    call(server, "POST", "/api/v1/plates", {"name": "Czech", "pattern": "[0-9]A[A-Z][0-9]{4}"})
    try:
        (patterned,) = native_plates(server, car)
        assert patterned["attributes"]["name"] == "Czech"
    finally:
        call(server, "DELETE", "/api/v1/plates/Far")
        call(server, "DELETE", "/api/v1/plates/Czech")
    (unnamed,) = native_plates(server, car)
    assert "name" not in unnamed["attributes"]


def test_mlapi_detect_names_a_plate_added_with_mlapi_plates(
    store: ModelCache,
    eval_photos: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    assert run_mlapi(["plates", "add", "Ann", "5au5341"]).returncode == 0
    done = run_mlapi(["detect", "-m", "plates", str(eval_photos[CAR])])
    assert done.returncode == 0, done.stderr
    (plate,) = json.loads(done.stdout)["detections"]
    assert plate["attributes"]["name"] == "Ann"
    annotated = run_mlapi(
        ["detect", "-m", "plates", "--annotate", str(tmp_path), str(eval_photos[CAR])]
    )
    assert annotated.returncode == 0, annotated.stderr
    assert (tmp_path / CAR).exists()


def test_stream_changes_only_emits_a_frame_with_a_new_plate(
    store: ModelCache,
    eval_photos: dict[str, Path],  # noqa: F811
    tmp_path: Path,
) -> None:
    """Three frames of the same parked car; in the third its plate reads 5AU5431 (two of
    its characters swapped), in the same place: a change."""
    image = cv2.imread(str(eval_photos[CAR]))
    assert image is not None
    swapped = image.copy()
    swapped[186:212, 359:367], swapped[186:212, 367:375] = (
        image[186:212, 367:375],
        image[186:212, 359:367],
    )
    folder = tmp_path / "frames"
    folder.mkdir()
    for name, frame in (("1.png", image), ("2.png", image), ("3.png", swapped)):
        cv2.imwrite(str(folder / name), frame)
    done = run_mlapi(["stream", str(folder), "-m", "plates", "--changes-only"])
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["frame"] for e in events] == [0, 2]
    read = [[d["attributes"]["plate"] for d in e["result"]["detections"]] for e in events]
    assert read == [["5AU5341"], ["5AU5431"]]
