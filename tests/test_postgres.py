"""The stores in a real PostgreSQL: the same answers as the TinyDB files, shared by every
replica, safe under concurrency, and a TinyDB install moved in without loss."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest
import services
from helpers import run_mlapi
from servers import LiveServer

from mlapi.config import ServerConfig, StoreSettings
from mlapi.engine import Engine
from mlapi.errors import GalleryError, StoreUnavailable, UserError
from mlapi.store import ModelCache
from mlapi.stores import NewSighting, Retention, Stores, open_stores, rules
from mlapi.stores.database import MIGRATIONS, Database
from mlapi.web.auth import CSRF_HEADER, SESSION_COOKIE

PASSWORD = "a long enough password"


def unit(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return vector / np.linalg.norm(vector)


@pytest.fixture(params=["files", "postgres"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """Each store's contract, checked on both implementations."""
    if request.param == "files":
        opened = open_stores(tmp_path)
    else:
        opened = open_stores(database=request.getfixturevalue("database"))
    yield opened
    opened.close()


CAPS = StoreSettings(max_keys_per_user=3, max_sessions_per_user=2)


@pytest.fixture(params=["files", "postgres"])
def capped(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stores]:
    """Both implementations with small per-user caps: 3 API keys, 2 console sessions."""
    if request.param == "files":
        opened = open_stores(tmp_path / "capped", settings=CAPS)
    else:
        opened = open_stores(database=request.getfixturevalue("database"), settings=CAPS)
    yield opened
    opened.close()


def test_keys_and_console_sessions_are_capped_per_user(capped: Stores) -> None:
    accounts, sessions = capped.accounts, capped.sessions
    accounts.add("ann", PASSWORD)
    accounts.add("bob", PASSWORD)
    mine = [accounts.create_key("ann", f"camera {i}") for i in range(3)]
    with pytest.raises(UserError) as refused:
        accounts.create_key("ann", "one too many")
    assert refused.value.status == 400
    assert "'ann' already has 3 API keys" in refused.value.message
    assert "--max-keys-per-user" in refused.value.message
    assert "mlapi keys revoke" in refused.value.message
    assert all(accounts.key_user(key) == "ann" for key in mine)  # none lost
    assert accounts.key_user(accounts.create_key("bob", "own")) == "bob"  # per user
    accounts.revoke_key(mine[0].split("_")[1])
    assert accounts.key_user(accounts.create_key("ann", "in its place")) == "ann"
    # A third sign-in closes the oldest of the two sessions; others' are untouched.
    stamp = accounts.stamp("ann") or ""
    bobs, _ = sessions.open("bob", accounts.stamp("bob") or "")
    first, _ = sessions.open("ann", stamp)
    time.sleep(0.01)
    second, _ = sessions.open("ann", stamp)
    time.sleep(0.01)
    third, _ = sessions.open("ann", stamp)
    assert sessions.find(first) is None
    assert sessions.find(second) is not None and sessions.find(third) is not None
    assert sessions.find(bobs) is not None


def test_the_console_says_why_a_key_is_refused(capped: Stores, tmp_path: Path) -> None:
    with Engine(ModelCache(tmp_path / "cache")) as engine:
        server = LiveServer(engine, tmp_path / "data", ServerConfig(models=()), capped)
        try:
            capped.accounts.add("ann", PASSWORD)
            body = json.dumps({"username": "ann", "password": PASSWORD}).encode()
            signed = []
            for _ in range(3):  # the third sign-in ends the first
                answer = server.call(
                    "POST", "/console/api/signin", body, {"Content-Type": "application/json"}
                )
                cookie = answer.headers["Set-Cookie"].split(";")[0].split("=", 1)[1]
                signed.append({"Cookie": f"{SESSION_COOKIE}={cookie}",
                               CSRF_HEADER: answer.json()["csrf"]})  # fmt: skip
                time.sleep(0.01)
            assert server.call("GET", "/console/api/keys", None, signed[0]).status == 401
            headers = {**signed[2], "Content-Type": "application/json"}
            made = [
                server.call("POST", "/console/api/keys", json.dumps({"name": n}).encode(), headers)
                for n in ("a", "b", "c", "d")
            ]
            assert [m.status for m in made] == [200, 200, 200, 400]
            message = made[3].json()["error"]
            assert "3 API keys" in message and "mlapi keys revoke" in message, message
        finally:
            server.stop()


def test_accounts_keep_their_promises(stores: Stores) -> None:
    accounts = stores.accounts
    accounts.add("ann", PASSWORD)
    with pytest.raises(UserError, match="already exists"):
        accounts.add("ann", PASSWORD)
    with pytest.raises(UserError, match="user names"):
        accounts.add("no spaces", PASSWORD)
    assert accounts.verify("ann", PASSWORD) and not accounts.verify("ann", PASSWORD + "!")
    assert not accounts.verify("nobody", PASSWORD)
    stamp = accounts.stamp("ann")
    accounts.set_password("ann", PASSWORD + "2")
    time.sleep(1.1)  # a replica re-reads a stamp after a second
    assert accounts.stamp("ann") not in (None, stamp)
    key = accounts.create_key("ann", "camera")
    assert key.startswith("mlk_") and accounts.key_user(key) == "ann"
    assert accounts.key_user(key[:-1] + ("x" if key[-1] != "x" else "y")) is None
    (listed,) = accounts.api_keys()
    assert (listed.name, listed.user) == ("camera", "ann")
    with pytest.raises(UserError, match="no user"):
        accounts.create_key("nobody", "k")
    accounts.revoke_key(listed.id)
    assert accounts.key_user(key) is None
    accounts.add("bob", PASSWORD)
    bobs = accounts.create_key("bob", "k")
    accounts.remove("bob")  # and bob's keys with him
    assert accounts.names() == ["ann"] and accounts.key_user(bobs) is None
    assert len(stores.secret.get()) >= 32 and stores.secret.get() == stores.secret.get()


def test_the_gallery_keeps_its_promises(stores: Stores) -> None:
    faces = stores.faces
    first = faces.add("  Zoe ", unit(1), "dlib", "zoe.jpg")
    faces.add("Zoe", unit(2), "dlib")
    faces.add("Max", unit(3), "dlib")
    faces.add("Max", unit(4), "faceres")
    assert faces.names() == ["Max", "Zoe"]
    assert {(s.name, s.model) for s in faces.samples()} == {
        ("Zoe", "dlib"), ("Max", "dlib"), ("Max", "faceres")
    }  # fmt: skip
    found = faces.match(unit(1), "dlib")
    assert found is not None and found.name == "Zoe" and found.similarity > 0.999
    assert found.runner_up is not None and found.runner_up < 0.5
    assert [m.name for m in faces.ranking(unit(3), "dlib")] == ["Max", "Zoe"]
    assert faces.match(unit(1), "arcface") is None
    with pytest.raises(GalleryError):
        faces.add("a/b", unit(5), "dlib")
    assert faces.remove("Zoe", first) == 1
    assert faces.remove("Max") == 2
    with pytest.raises(GalleryError, match="no person"):
        faces.remove("Max")
    assert faces.names() == ["Zoe"]
    # CompreFace's subjects: people with no samples yet, renamed and merged, cleared.
    assert faces.create("Noor") and not faces.create("Noor") and not faces.create("Zoe")
    kept = faces.add("Ada", unit(6), "dlib")
    stored = faces.sample(kept)
    assert stored is not None and stored[0].name == "Ada"
    assert np.allclose(stored[1], unit(6), atol=1e-6)
    assert faces.rename("Ada", "Zoe") == 1 and faces.rename("Noor", "Nora") == 0
    assert faces.names() == ["Nora", "Zoe"]
    with pytest.raises(GalleryError, match="no person"):
        faces.rename("Ada", "Bea")
    assert faces.remove_sample(kept).name == "Zoe" and faces.sample(kept) is None
    assert faces.remove("Nora") == 0 and faces.names() == ["Zoe"]  # an empty person goes too
    assert faces.clear() == 1 and faces.names() == [] and faces.samples() == []


def test_face_pictures_come_and_go_with_their_samples(stores: Stores) -> None:
    faces = stores.faces
    jpeg = b"\xff\xd8 a small face"
    pictured = faces.add("Zoe", unit(1), "dlib", "zoe.jpg", jpeg)
    other = faces.add("Zoe", unit(2), "dlib", thumbnail=jpeg + b"2")
    plain = faces.add("Max", unit(3), "dlib")
    assert faces.thumbnail(pictured) == jpeg and faces.thumbnail(plain) is None
    assert faces.thumbnail("../../users") is None and faces.thumbnail("nope") is None
    faces.remove_sample(pictured)
    assert faces.thumbnail(pictured) is None and faces.thumbnail(other) == jpeg + b"2"
    faces.rename("Zoe", "Zora")  # a sample keeps its picture under a new name
    assert faces.thumbnail(other) == jpeg + b"2"
    faces.remove("Zora")
    assert faces.thumbnail(other) is None
    again = faces.add("Ann", unit(4), "dlib", thumbnail=jpeg)
    faces.clear()
    assert faces.thumbnail(again) is None


def test_console_sessions_keep_only_digests_and_end_everywhere(stores: Stores) -> None:
    stores.accounts.add("ann", PASSWORD)
    stamp = stores.accounts.stamp("ann") or ""
    secret, csrf = stores.sessions.open("ann", stamp)
    other, _ = stores.sessions.open("ann", stamp)
    found = stores.sessions.find(secret)
    assert found is not None and (found.user, found.csrf, found.stamp) == ("ann", csrf, stamp)
    assert found.expires > time.time() + 3600
    assert stores.sessions.find(secret + "x") is None
    stores.sessions.close(secret)
    assert stores.sessions.find(secret) is None and stores.sessions.find(other) is not None
    if stores.where.startswith("/"):  # the file holds digests, never a usable secret
        assert other not in (Path(stores.where) / "sessions.json").read_text()


def test_keys_remember_when_they_were_last_used(stores: Stores) -> None:
    accounts = stores.accounts
    accounts.add("ann", PASSWORD)
    key = accounts.create_key("ann", "camera")
    (listed,) = accounts.api_keys()
    assert listed.last_used is None
    accounts.keys_used({listed.id: 1.8e9, "gone": 1.8e9})  # a key revoked meanwhile: ignored
    (listed,) = accounts.api_keys()
    assert listed.last_used == 1.8e9 and accounts.key_user(key) == "ann"


def test_replicas_see_each_others_changes(database: str) -> None:
    a, b = open_stores(database=database), open_stores(database=database)
    try:
        a.accounts.add("ann", PASSWORD)
        key = b.accounts.create_key("ann", "camera")
        assert a.accounts.key_user(key) == "ann"  # made on b, known to a at once
        b.accounts.revoke_key(key.split("_")[1])
        time.sleep(1.1)
        assert a.accounts.key_user(key) is None  # revoked on b, refused by a within 1 s
        assert a.faces.match(unit(7), "dlib") is None
        b.faces.add("Zoe", unit(7), "dlib")
        found = a.faces.match(unit(7), "dlib")  # added on b: a's next match sees it
        assert found is not None and found.name == "Zoe"
        assert a.secret.get() == b.secret.get()
    finally:
        a.close()
        b.close()


def test_a_burst_of_guesses_over_replicas_is_limited_like_a_sequence(database: str) -> None:
    replicas = [open_stores(database=database) for _ in range(4)]
    results: list[int] = []
    lock = threading.Lock()

    def guess(replica: Stores) -> None:
        wait = replica.logins.attempt("ann", "192.0.2.7")
        with lock:
            results.append(wait)

    threads = [threading.Thread(target=guess, args=(replicas[i % 4],)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert results.count(0) == 5 and all(290 < w <= 301 for w in results if w)
        # Another user from the same address still gets its own five.
        assert [replicas[0].logins.attempt("bob", "192.0.2.7") for _ in range(5)] == [0] * 5
        replicas[1].logins.succeeded("bob", "192.0.2.7")
        assert replicas[2].logins.attempt("bob", "192.0.2.7") == 0  # forgiven
    finally:
        for replica in replicas:
            replica.close()


def test_replicas_starting_together_upgrade_the_schema_once(database: str) -> None:
    outcomes: list[tuple[int, int]] = []

    def start() -> None:
        db = Database(database)
        try:
            outcomes.append(db.upgrade())
        finally:
            db.close()

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [(0, len(MIGRATIONS))] + [(len(MIGRATIONS),) * 2] * 5
    upgraded = run_mlapi(["db", "upgrade", "--database", database])
    assert upgraded.returncode == 0 and "up to date" in upgraded.stderr
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT version FROM mlapi_schema").fetchall() == [(len(MIGRATIONS),)]


def test_a_database_that_does_not_answer_is_unavailable_not_an_error() -> None:
    cluster = services.Cluster()
    try:
        stores = open_stores(database=cluster.url())
        stores.accounts.add("ann", PASSWORD)
        key = stores.accounts.create_key("ann", "k")
        assert stores.accounts.key_user(key) == "ann"
        cluster.stop("immediate")
        # A key checked moments ago is still trusted; everything else is StoreUnavailable.
        assert stores.accounts.key_user(key) == "ann"
        with pytest.raises(StoreUnavailable):
            stores.faces.names()
        with pytest.raises(StoreUnavailable):
            stores.accounts.verify("ann", PASSWORD)
        cluster.start()
        deadline = time.monotonic() + 20  # the pool reconnects by itself
        while time.monotonic() < deadline:
            try:
                assert stores.faces.names() == []
                break
            except StoreUnavailable:
                time.sleep(0.5)
        else:
            raise AssertionError("the pool did not reconnect")
        assert stores.accounts.verify("ann", PASSWORD)
        stores.close()
    finally:
        cluster.close()


def tinydb_install(folder: Path, people: int, per_person: int) -> str:
    """A data folder as mlapi leaves it: users, a key, a secret, a gallery, known plates."""
    files = open_stores(folder)
    files.accounts.add("ann", PASSWORD)
    key = files.accounts.create_key("ann", "camera")
    files.secret.get()
    files.plates.add("ann", plate="5AU 5341")
    files.plates.add("fleet", pattern="FLEET[0-9]{3}")
    samples = {
        str(i): {
            "id": secrets.token_hex(6),
            "name": f"person {i // per_person}",
            "model": "dlib",
            "created": 1.7e9 + i,
            "source": f"{i}.jpg",
            "embedding": rules.stored_embedding(unit(i)),
        }
        for i in range(people * per_person)
    }
    (folder / "gallery.json").write_text(json.dumps({"samples": samples}))
    (folder / "faces").mkdir()
    for row in list(samples.values())[:3]:  # the console's face pictures, for a few
        (folder / "faces" / f"{row['id']}.jpg").write_bytes(b"\xff\xd8" + str(row["id"]).encode())
    seen = [  # faces seen: two groups of unknown faces and a known person's
        NewSighting(1.7e9 + i, "dlib", unit(i % 2), (1, 2, 3, 4), 0.5, b"\xff\xd8%d" % i,
                    person="person 7" if i == 4 else None, source=f"cam {i}")
        for i in range(5)
    ]  # fmt: skip
    files.sightings.record(seen, Retention(days=1e5, every=0))
    return key


def test_db_copy_moves_an_install_without_loss_and_only_once(tmp_path: Path, database: str) -> None:
    key = tinydb_install(tmp_path, people=1000, per_person=5)
    command = [
        sys.executable,
        "-m",
        "mlapi",
        "db",
        "copy",
        "--to",
        database,
        "--from",
        str(tmp_path),
    ]
    first = subprocess.run(command, capture_output=True, text=True, check=False)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "users: 1 copied, 0 already there",
        "API keys: 1 copied, 0 already there",
        "signing secret: 1 copied, 0 already there",
        "face samples: 5000 copied, 0 already there",
        "face thumbnails: 3 copied, 0 already there",
        "known plates: 2 copied, 0 already there",
        "face sightings: 5 copied, 0 already there",
    ]
    again = subprocess.run(command, capture_output=True, text=True, check=False)
    assert "face samples: 0 copied, 5000 already there" in again.stdout
    assert "known plates: 0 copied, 2 already there" in again.stdout
    assert "face sightings: 0 copied, 5 already there" in again.stdout
    moved, files = open_stores(database=database), open_stores(tmp_path)
    try:
        assert moved.accounts.key_user(key) == "ann" and moved.accounts.verify("ann", PASSWORD)
        assert moved.secret.get() == files.secret.get()  # tokens already given out still work
        assert len(moved.faces.samples()) == 5000 and len(moved.faces.names()) == 1000
        probe = unit(4321)
        assert moved.faces.match(probe, "dlib") == files.faces.match(probe, "dlib")
        pictured = [s.id for s in files.faces.samples() if files.faces.thumbnail(s.id)]
        assert len(pictured) == 3
        assert all(moved.faces.thumbnail(i) == files.faces.thumbnail(i) for i in pictured)
        assert moved.plates.known() == files.plates.known()
        groups = files.sightings.clusters()
        assert [(c.id, c.count) for c in moved.sightings.clusters()] == [
            (c.id, c.count) for c in groups]  # fmt: skip
        assert moved.sightings.seen("person 7") == files.sightings.seen("person 7")
        every = [s for c in groups for s in c.sightings] + files.sightings.seen("person 7")
        assert all(moved.sightings.picture(s.id) == files.sightings.picture(s.id) for s in every)
        # The groups place new faces as they did (their faceprints' sums were made anew).
        face = NewSighting(1.8e9, "dlib", unit(1), (1, 2, 3, 4), 0.5, b"\xff\xd8")
        moved.sightings.record([face], Retention(days=1e5, every=0))
        assert [c.count for c in moved.sightings.clusters()] == [3, 2]
    finally:
        moved.close()


def test_the_server_answers_503_while_the_database_is_down(
    store: ModelCache, photos: Path, tmp_path: Path
) -> None:
    cluster = services.Cluster()
    stores = open_stores(database=cluster.url())
    engine = Engine(store, gallery=stores.faces)  # as `mlapi serve --database` makes it
    server = LiveServer(engine, tmp_path, ServerConfig(models=("objects",)), stores)
    try:
        stores.accounts.add("ann", PASSWORD)
        key = stores.accounts.create_key("ann", "camera")
        other = stores.accounts.create_key("ann", "unused")
        photo = (photos / "object_detection_input.jpg").read_bytes()
        headers = {"X-API-Key": key, "Content-Type": "image/jpeg"}
        before = server.call("POST", "/api/v1/detect", photo, headers)
        assert before.status == 200
        cluster.stop("immediate")
        # Detection needs no state: the key checked moments ago is still trusted.
        during = server.call("POST", "/api/v1/detect", photo, headers)
        assert during.status == 200 and during.body == before.body
        # What needs the database says so, in each dialect's words, and when to retry.
        fresh = server.call("POST", "/api/v1/detect", photo, {**headers, "X-API-Key": other})
        assert fresh.status == 503 and fresh.headers["Retry-After"] == "1"
        assert fresh.json() == {"code": 503, "msg": "the database does not answer; retry shortly"}
        listed = server.upload("/v1/vision/face/list", {}, fields={"api_key": key})
        assert listed.status == 503 and listed.json()["success"] is False
        assert server.login("ann", PASSWORD).status == 503
        cluster.start()
        deadline = time.monotonic() + 20
        while server.login("ann", PASSWORD).status != 200:  # the pool reconnects by itself
            assert time.monotonic() < deadline, "no reconnection"
            time.sleep(0.5)
        assert server.upload("/v1/vision/face/list", {}, fields={"api_key": key}).status == 200
    finally:
        server.stop()
        engine.close()
        stores.close()
        cluster.close()
