"""The memory of faces seen, as a store: the same promises kept by the TinyDB file
(FileSightings, the reference) and by PostgreSQL (PgSightings), which replicas share.

Faceprints are unit vectors with a little noise: the same person's are at cosine 0.95 or
more (calibrated similarity above the join threshold, as with real dlib faceprints), two
people's at 0.5 or less (similarity 0)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from mlapi.errors import GalleryError, UnknownSighting
from mlapi.similarity import similarity
from mlapi.stores import NewSighting, Retention, Sighting, Sightings
from mlapi.stores.database import MIGRATIONS, Database
from mlapi.stores.pg_sightings import PgSightings
from mlapi.stores.sightings import FileSightings

EVERY = Retention(every=0)  # keep every face (the repeat rule is tested on its own)
T0 = float(int(time.time()) - 3600)  # an hour ago, a whole second: T0 + 1 is exact


def person(seed: int) -> np.ndarray:
    vector = np.random.default_rng(seed).normal(size=128)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


class Faces:
    """Faceprints of a few people: each call a new photo of the same face."""

    def __init__(self) -> None:
        self.rng = np.random.default_rng(7)

    def of(self, seed: int) -> np.ndarray:
        vector = person(seed) + self.rng.normal(scale=0.012, size=128)
        unit: np.ndarray = (vector / np.linalg.norm(vector)).astype(np.float32)
        return unit


def new(
    embedding: np.ndarray,
    seen: float,
    who: str | None = None,
    source: str = "cam",
    quality: float = 0.5,
    model: str = "dlib",
    picture: bytes | None = None,
) -> NewSighting:
    return NewSighting(
        seen=seen,
        model=model,
        embedding=embedding,
        box=(10, 20, 110, 140),
        quality=quality,
        picture=picture if picture is not None else f"jpeg {seen}".encode(),
        person=who,
        similarity=0.8 if who else 0.0,
        source=source,
        route="/v1/vision/face/recognize",
        client="ann (key front door)",
    )


@pytest.fixture(params=["files", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Sightings]:
    if request.param == "files":
        yield FileSightings(tmp_path / "sightings.json")
        return
    db = Database(request.getfixturevalue("database"))
    db.upgrade()
    try:
        yield PgSightings(db)
        sums_agree(db)
    finally:
        db.close()


def sums_agree(db: Database) -> None:
    """PostgreSQL's sums of each group's faceprints (what places new faces) are those of
    its rows, after whatever a test did."""
    with db.connection() as conn:
        kept = {
            c: (model, np.frombuffer(total, "<f8"), count)
            for c, model, total, count in conn.execute("SELECT * FROM mlapi_clusters")
        }
        rows = conn.execute(
            "SELECT cluster, model, embedding FROM mlapi_sightings WHERE person IS NULL"
        ).fetchall()
    counted: dict[str, tuple[str, np.ndarray, int]] = {}
    for cluster, model, blob in rows:
        vector = np.frombuffer(blob, "<f4").astype(np.float64)
        _, total, count = counted.get(cluster, (model, np.zeros_like(vector), 0))
        counted[cluster] = (model, total + vector, count + 1)
    assert sorted(kept) == sorted(counted)
    for c, (model, total, count) in counted.items():
        assert kept[c][0] == model and kept[c][2] == count, c
        assert np.allclose(kept[c][1], total, atol=1e-6), c


@pytest.fixture
def faces() -> Faces:
    return Faces()


def test_the_faceprints_are_like_real_ones(faces: Faces) -> None:
    same = [float(faces.of(1) @ faces.of(1)) for _ in range(20)]
    others = [float(faces.of(a) @ faces.of(b)) for a in range(1, 6) for b in range(a + 1, 7)]
    assert min(same) >= 0.95 and similarity(min(same), "dlib") >= Retention().join_at
    assert max(others) <= 0.5 and similarity(max(others), "dlib") == 0.0


def groups(store: Sightings) -> list[list[str]]:
    """Each cluster's sightings' sources, as sets would be, in listing order."""
    return [sorted(s.source for s in c.sightings) for c in store.clusters(best=1000)]


def test_unknown_faces_are_grouped_by_person_as_they_arrive(store: Sightings, faces: Faces) -> None:
    batch = [
        new(faces.of(who), T0 + i, source=f"p{who}", quality=0.1 * (i % 7) + 0.2)
        for i, who in enumerate([1, 2, 3, 1, 2, 1, 3, 1, 2])
    ]
    assert store.record(batch, EVERY) == 9
    listed = store.clusters()
    assert [len(c.sightings) for c in listed] == [3, 4, 2]  # the most recently seen first
    assert groups(store) == [["p2"] * 3, ["p1"] * 4, ["p3"] * 2]
    for c in listed:
        assert c.model == "dlib" and c.count == len(c.sightings)
        assert c.first_seen == min(s.seen for s in c.sightings)
        assert c.last_seen == max(s.seen for s in c.sightings)
        assert all(s.cluster == c.id and s.person is None for s in c.sightings)
        who = int(c.sightings[0].source[1:])
        assert float(c.centroid @ person(who)) > 0.99
        assert abs(float(np.linalg.norm(c.centroid)) - 1) < 1e-5
    # The best (by quality) first; `best` bounds the sightings, not the count.
    ann = store.clusters(best=2)[1]
    assert ann.count == 4 and len(ann.sightings) == 2
    everyone = store.cluster(ann.id).sightings
    assert [s.quality for s in everyone] == sorted((s.quality for s in everyone), reverse=True)
    assert everyone[:2] == ann.sightings
    assert [(c.count, c.sightings) for c in store.clusters(best=0)] == [(3, ()), (4, ()), (2, ())]
    # Later batches join the same groups; another model's faceprint never does.
    assert store.record([new(faces.of(1), T0 + 100, source="p1")], EVERY) == 1
    assert store.record([new(faces.of(1), T0 + 101, source="p1", model="faceres")], EVERY) == 1
    after = store.clusters()
    assert [(c.model, c.count) for c in after] == [("faceres", 1), ("dlib", 5), *[
        ("dlib", 3), ("dlib", 2)]]  # fmt: skip
    assert after[1].id == ann.id
    # Known faces are kept under their person, in no group.
    store.record([new(faces.of(4), T0 + 200, who="Bob")], EVERY)
    assert len(store.clusters()) == 4
    assert [s.cluster for s in store.seen("Bob")] == [None]


def test_a_face_the_same_source_just_showed_is_kept_once_every_few_seconds(
    store: Sightings, faces: Faces
) -> None:
    keep = Retention(every=10)
    assert (
        store.record(
            [
                new(faces.of(1), T0, who="Ann", source="door"),
                new(faces.of(1), T0 + 3, who="Ann", source="door"),  # a repeat
                new(faces.of(1), T0 + 3, who="Ann", source="garden"),  # another camera
                new(faces.of(1), T0 + 12, who="Ann", source="door"),  # later
                new(faces.of(2), T0 + 1, source="door"),  # an unknown face
                new(faces.of(2), T0 + 6, source="door"),  # the same unknown face
                new(faces.of(3), T0 + 6, source="door"),  # another one
            ],
            keep,
        )
        == 5
    )
    # Across batches too; and 0 keeps every one.
    assert store.record([new(faces.of(1), T0 + 15, who="Ann", source="door")], keep) == 0
    assert store.record([new(faces.of(2), T0 + 9, source="door")], keep) == 0
    assert store.record([new(faces.of(2), T0 + 11.5, source="door")], keep) == 1
    assert store.record([new(faces.of(1), T0 + 16, who="Ann", source="door")], EVERY) == 1
    seen = store.seen("Ann")
    assert [(s.source, round(s.seen - T0)) for s in seen] == [
        ("door", 16), ("door", 12), ("garden", 3), ("door", 0)]  # fmt: skip
    assert sorted(c.count for c in store.clusters()) == [1, 2]


def test_retention_drops_the_oldest_first_and_their_pictures(
    store: Sightings, faces: Faces
) -> None:
    now = time.time()
    old = [new(faces.of(1), now - 3 * 86400 + i, source="old") for i in range(2)]
    store.record(old, EVERY)
    gone = [s.id for c in store.clusters() for s in c.sightings]
    assert len(gone) == 2 and all(store.picture(i) for i in gone)
    # Two days kept: those three days old go with the next batch.
    batch = [new(faces.of(2), now - 60 + i, source=f"n{i}") for i in range(4)]
    assert store.record(batch, Retention(days=2, every=0)) == 4
    assert [c.count for c in store.clusters()] == [4]
    for i in gone:
        assert store.picture(i) is None
        with pytest.raises(UnknownSighting):
            store.sighting(i)
    # At most 3: the oldest beyond them go (the batch's own included), pictures too.
    kept = store.clusters()[0].sightings
    oldest = sorted(kept, key=lambda s: s.seen)[:2]
    assert store.record([new(faces.of(3), now, who="Cy")], Retention(most=3, every=0)) == 1
    left = {s.id for c in store.clusters() for s in c.sightings}
    assert left == {s.id for s in kept} - {s.id for s in oldest}
    assert all(store.picture(s.id) is None for s in oldest)
    assert [s.person for s in store.seen("Cy")] == ["Cy"]
    # A group all of whose faces went is gone: the same face starts another.
    store.record([new(faces.of(1), now, source="back")], EVERY)
    assert [c.count for c in store.clusters()] == [1, 2]


def test_groups_merge_and_a_face_moves_out(store: Sightings, faces: Faces) -> None:
    store.record([new(faces.of(w), T0 + i, source=f"p{w}") for i, w in enumerate([1, 1, 2, 3])],
                 EVERY)  # fmt: skip
    ones, two, three = (
        next(c for c in store.clusters() if c.sightings[0].source == f"p{w}") for w in (1, 2, 3)
    )
    assert store.merge([ones.id, two.id, two.id]) == ones.id
    merged = store.cluster(ones.id)
    assert merged.count == 3 and sorted(s.source for s in merged.sightings) == ["p1", "p1", "p2"]
    with pytest.raises(UnknownSighting):
        store.cluster(two.id)
    assert store.merge([ones.id]) == ones.id and store.cluster(ones.id).count == 3
    consistent(store)
    # Person 2's group is no more: their next face starts another (mostly person 1's now).
    store.record([new(faces.of(2), T0 + 10, source="p2")], EVERY)
    assert store.cluster(ones.id).count == 3 and len(store.clusters()) == 3
    assert two.id not in {c.id for c in store.clusters()}
    with pytest.raises(UnknownSighting):
        store.merge([ones.id, "000000000000"])
    with pytest.raises(UnknownSighting):
        store.merge([])
    store.record([new(faces.of(5), T0 + 20, model="faceres")], EVERY)
    other = next(c for c in store.clusters() if c.model == "faceres")
    with pytest.raises(UnknownSighting):
        store.merge([ones.id, other.id])
    assert store.cluster(ones.id).count == 3 and store.cluster(other.id).count == 1
    # Moved out: a group of its own; its old group is one smaller.
    odd = next(s for s in store.cluster(ones.id).sightings if s.source == "p2")
    alone = store.move_out(odd.id)
    assert alone != ones.id and [s.id for s in store.cluster(alone).sightings] == [odd.id]
    assert store.sighting(odd.id).cluster == alone and store.cluster(ones.id).count == 2
    store.merge([three.id, alone])
    assert store.cluster(three.id).count == 2
    consistent(store)
    store.record([new(faces.of(9), T0 + 30, who="Dee")], EVERY)
    with pytest.raises(UnknownSighting):
        store.move_out(store.seen("Dee")[0].id)


def test_named_faces_are_the_persons_with_a_history_newest_first(
    store: Sightings, faces: Faces
) -> None:
    store.record([new(faces.of(1), T0 + i, source="door") for i in range(5)], EVERY)
    store.record([new(faces.of(2), T0 + 50, who="Bob")], EVERY)
    group = store.clusters()[0]
    chosen = [s.id for s in group.sightings[:3]]
    with pytest.raises(UnknownSighting):
        store.attribute([*chosen, "000000000000"], "Ann")
    assert store.cluster(group.id).count == 5  # nothing changed
    with pytest.raises(GalleryError):
        store.attribute(chosen, "a/b")
    assert store.attribute([*chosen, chosen[0]], " Ann ") == 3
    assert store.cluster(group.id).count == 2
    history = store.seen("Ann")
    assert [s.id for s in history] == [
        s.id for s in sorted((store.sighting(i) for i in chosen), key=lambda s: -s.seen)
    ]
    assert all(s.person == "Ann" and s.cluster is None for s in history)
    assert [s.id for s in store.seen("Ann", limit=2)] == [s.id for s in history[:2]]
    assert [s.id for s in store.seen("Ann", limit=2, offset=2)] == [history[2].id]
    assert store.seen("Ann", offset=3) == [] and store.seen("Nobody") == []
    assert store.last_seen() == {"Ann": history[0].seen, "Bob": T0 + 50}
    consistent(store)
    # The rest of the group too: it is gone, and Ann's next unknown face starts another.
    store.attribute([s.id for s in store.cluster(group.id).sightings], "Ann")
    with pytest.raises(UnknownSighting):
        store.cluster(group.id)
    assert len(store.seen("Ann")) == 5 and [c.id for c in store.clusters()] == []
    store.record([new(faces.of(1), T0 + 60)], EVERY)
    assert [c.count for c in store.clusters()] == [1] and store.clusters()[0].id != group.id
    # A person's sightings follow a rename.
    assert store.renamed("Ann", "Anna") == 5 and store.renamed("Ann", "Anna") == 0
    assert store.seen("Ann") == [] and len(store.seen("Anna")) == 5
    assert set(store.last_seen()) == {"Anna", "Bob"}


def test_a_wrong_name_is_taken_back_into_a_group_of_its_own(store: Sightings, faces: Faces) -> None:
    store.record([new(faces.of(1), T0 + i, who="Ann") for i in range(3)], EVERY)
    wrong = store.seen("Ann")[0]
    assert wrong.similarity == 0.8
    cluster = store.unattribute(wrong.id)
    back = store.sighting(wrong.id)
    assert (back.person, back.similarity, back.cluster) == (None, 0.0, cluster)
    assert [s.id for s in store.cluster(cluster).sightings] == [wrong.id]
    assert wrong.id not in {s.id for s in store.seen("Ann")}
    assert store.last_seen() == {"Ann": T0 + 1}
    # Its faceprint now places faces: Ann's next unknown face joins it.
    store.record([new(faces.of(1), T0 + 10)], EVERY)
    assert store.cluster(cluster).count == 2
    # An unknown face taken back again moves to yet another group.
    again = store.unattribute(wrong.id)
    assert again != cluster and store.cluster(cluster).count == 1
    consistent(store)


def test_forgetting(store: Sightings, faces: Faces) -> None:
    store.record([new(faces.of(w), T0 + i) for i, w in enumerate([1, 1, 1, 2, 2])], EVERY)
    store.record([new(faces.of(3), T0 + 10, who="Cy")], EVERY)
    twos, ones = store.clusters()
    pictures = [s.id for s in ones.sightings]
    assert store.forget(ones.id) == 3
    assert all(store.picture(i) is None for i in pictures)
    with pytest.raises(UnknownSighting):
        store.forget(ones.id)
    store.record([new(faces.of(1), T0 + 20)], EVERY)  # a group anew
    assert sorted(c.count for c in store.clusters()) == [1, 2]
    assert ones.id not in {c.id for c in store.clusters()}
    one = twos.sightings[0].id
    store.forget_sighting(one)
    assert store.picture(one) is None and store.cluster(twos.id).count == 1
    consistent(store)
    with pytest.raises(UnknownSighting):
        store.forget_sighting(one)
    store.forget_sighting(store.seen("Cy")[0].id)
    assert store.last_seen() == {}
    assert store.forget_all() == 2
    assert store.clusters() == [] and store.forget_all() == 0
    store.record([new(faces.of(2), T0 + 30)], EVERY)
    assert [c.count for c in store.clusters()] == [1]


def test_missing_ids_are_unknown_sightings(store: Sightings, faces: Faces) -> None:
    store.record([new(faces.of(1), T0)], EVERY)
    missing = "0123456789ab"
    calls: list[Callable[[], Any]] = [
        lambda: store.sighting(missing),
        lambda: store.cluster(missing),
        lambda: store.unattribute(missing),
        lambda: store.move_out(missing),
        lambda: store.forget_sighting(missing),
        lambda: store.forget(missing),
        lambda: store.merge([missing]),
        lambda: store.attribute([missing], "Ann"),
    ]
    for call in calls:
        with pytest.raises(UnknownSighting) as raised:
            call()
        assert raised.value.status == 404
    assert store.picture(missing) is None and store.picture("../x") is None
    assert store.embeddings([missing]) == {}
    assert [c.count for c in store.clusters()] == [1]  # nothing changed


def test_sightings_pictures_and_faceprints_come_back_as_kept(
    store: Sightings, faces: Faces
) -> None:
    jpeg = bytes(range(256)) * 40
    face = faces.of(1)
    sent = NewSighting(
        seen=T0 + 0.123456, model="dlib", embedding=face, box=(1, 2, 300, 400),
        quality=0.876543, picture=jpeg, person="Ann", similarity=0.712345,
        source="porch", route="/api/v1/detect", client="ann",
    )  # fmt: skip
    store.record([sent, new(faces.of(2), T0, picture=b"")], EVERY)
    got = store.seen("Ann")[0]
    assert got == Sighting(
        id=got.id, seen=round(T0 + 0.123456, 3), model="dlib", box=(1, 2, 300, 400),
        quality=round(0.876543, 4), person="Ann", similarity=round(0.712345, 4), source="porch",
        route="/api/v1/detect", client="ann", cluster=None,
    )  # fmt: skip
    assert store.sighting(got.id) == got
    assert store.picture(got.id) == jpeg
    unknown = store.clusters()[0].sightings[0]
    assert store.picture(unknown.id) == b""
    vectors = store.embeddings([got.id, "0123456789ab", unknown.id])
    assert list(vectors) == [got.id, unknown.id]
    assert vectors[got.id].dtype == np.float32 and np.array_equal(vectors[got.id], face)


# -- PostgreSQL only: replicas and the schema --------------------------------------------


@pytest.fixture
def replicas(database: str) -> Iterator[list[PgSightings]]:
    """Two replicas' stores: each its own pool of connections to one database."""
    pools = [Database(database), Database(database)]
    pools[0].upgrade()
    try:
        yield [PgSightings(db) for db in pools]
    finally:
        for db in pools:
            db.close()


def test_replicas_see_and_group_each_others_sightings(
    replicas: list[PgSightings], faces: Faces
) -> None:
    one, two = replicas
    one.record([new(faces.of(1), T0, source="door")], EVERY)
    listed = two.clusters()
    assert len(listed) == 1 and listed[0].sightings[0].source == "door"
    assert two.picture(listed[0].sightings[0].id) == f"jpeg {T0}".encode()
    # Each replica places faces in the groups the other made, and back.
    two.record([new(faces.of(1), T0 + 1, source="yard"), new(faces.of(2), T0 + 1)], EVERY)
    one.record([new(faces.of(1), T0 + 2), new(faces.of(2), T0 + 2)], EVERY)
    assert sorted(c.count for c in one.clusters()) == [2, 3]
    merged = one.merge([c.id for c in one.clusters()])
    assert [(c.id, c.count) for c in two.clusters()] == [(merged, 5)]
    assert one.attribute([s.id for s in two.clusters()[0].sightings], "Ann") == 5
    assert two.clusters() == [] and len(two.seen("Ann")) == 5
    two.record([new(faces.of(1), T0 + 4)], EVERY)
    one.record([new(faces.of(1), T0 + 5)], EVERY)  # no group it remembered that is gone
    assert [c.count for c in two.clusters()] == [2] and two.clusters()[0].id != merged
    consistent(one)
    sums_agree(one.db)


def test_replicas_recording_one_new_face_at_once_start_one_group(
    replicas: list[PgSightings], faces: Faces
) -> None:
    start = threading.Barrier(len(replicas) * 2)
    errors: list[BaseException] = []

    def record(store: PgSightings, seen: float) -> None:
        try:
            start.wait()
            for i in range(5):
                store.record([new(faces.of(3), seen + i)], EVERY)
        except BaseException as exc:
            errors.append(exc)

    threads = [
        threading.Thread(target=record, args=(store, T0 + 10 * n))
        for n, store in enumerate(replicas * 2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [c.count for c in replicas[0].clusters()] == [20]


def test_the_schema_moves_forward_from_the_version_before(database: str, faces: Faces) -> None:
    before = next(i for i, sql in enumerate(MIGRATIONS) if "mlapi_sightings" in sql)
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("CREATE TABLE mlapi_schema (version integer NOT NULL)")
        conn.execute("INSERT INTO mlapi_schema VALUES (%s)", (before,))
        for sql in MIGRATIONS[:before]:
            conn.execute(sql.encode())
        conn.execute("INSERT INTO mlapi_users VALUES ('ann', 'hash', 1.0)")
    db = Database(database)
    try:
        assert db.upgrade() == (before, len(MIGRATIONS))
        store = PgSightings(db)
        store.record([new(faces.of(1), T0), new(faces.of(1), T0 + 1, who="Ann")], EVERY)
        assert [c.count for c in store.clusters()] == [1] and len(store.seen("Ann")) == 1
        with db.connection() as conn:
            assert conn.execute("SELECT name FROM mlapi_users").fetchall() == [("ann",)]
        assert db.upgrade() == (len(MIGRATIONS),) * 2
    finally:
        db.close()


def consistent(store: Sightings) -> None:
    """Each group's centroid is the normalised mean of its faces' faceprints."""
    for c in store.clusters():
        whole = store.cluster(c.id)
        vectors = store.embeddings([s.id for s in whole.sightings])
        mean = np.sum([vectors[s.id] for s in whole.sightings], axis=0, dtype=np.float64)
        assert np.allclose(c.centroid, mean / np.linalg.norm(mean), atol=1e-5), c.id


def test_warming_reads_another_writers_faces_before_a_listing_asks(
    store: Sightings, tmp_path: Path, faces: Faces
) -> None:
    """What the server calls when idle: afterwards a listing finds another process's (or
    replica's) faces without reading them again itself."""
    if isinstance(store, FileSightings):
        other: Sightings = FileSightings(store.path)
    else:
        assert isinstance(store, PgSightings)
        other = PgSightings(store.db)
    assert store.clusters() == []
    other.record([new(faces.of(1), T0), new(faces.of(2), T0 + 1)], EVERY)
    store.warm()
    warmed = store._view if isinstance(store, FileSightings) else None
    assert sorted(c.count for c in store.clusters()) == [1, 1]
    if isinstance(store, FileSightings):  # listed from the view warm() made: not read again
        assert store._view is warmed and warmed._clusters is not None
