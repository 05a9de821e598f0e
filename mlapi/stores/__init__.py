"""What the server remembers, each behind a small protocol: users and API keys, the token
signing secret, failed logins, the face gallery, the faces seen and the known plates.

The server, the CLI and the dialects see only these protocols. Today's implementation is
TinyDB files in the data folder (`open_stores`); another backend (a database shared by
replicas) is one module per store, with no change elsewhere.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import numpy as np

from mlapi.config import StoreSettings
from mlapi.errors import UserError

KEY_PREFIX = "mlk_"  # every API key starts so: it is never mistaken for a token


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    user: str
    created: float
    last_used: float | None = None  # to the minute or so: the server records uses in batches


@dataclass(frozen=True)
class Sample:
    id: str
    name: str
    model: str
    created: float
    source: str


@dataclass(frozen=True)
class KnownPlate:
    """A name for a plate (its upper-case letters and digits) or for every plate a regular
    expression matches in full; exactly one of `plate` and `pattern` is set."""

    name: str
    plate: str = ""
    pattern: str = ""
    created: float = 0.0


@dataclass(frozen=True)
class Match:
    name: str
    similarity: float  # cosine with the closest sample of `name`
    runner_up: float | None = None  # cosine with the closest sample of anyone else


class Accounts(Protocol):
    """Users (password hashes) and their API keys (digests only)."""

    def add(self, name: str, password: str) -> None: ...
    def set_password(self, name: str, password: str) -> None: ...
    def remove(self, name: str) -> None: ...
    def names(self) -> list[str]: ...
    def exists(self, name: str) -> bool: ...
    def stamp(self, name: str) -> str | None:
        """A stamp tokens carry; it changes with the password and when the user is remade."""
        ...

    def verify(self, name: str, password: str) -> bool: ...
    def create_key(self, user: str, name: str) -> str: ...
    def api_keys(self) -> list[ApiKey]: ...
    def revoke_key(self, key_id: str) -> None: ...
    def key_user(self, secret: str) -> str | None: ...
    def keys_used(self, used: Mapping[str, float]) -> None:
        """When keys (by id) were last used; the server sends them in batches."""
        ...


class SigningSecret(Protocol):
    def get(self) -> bytes:
        """The token signing secret, made once on first use and then shared."""
        ...


class LoginAttempts(Protocol):
    def attempt(self, user: str, address: str) -> int:
        """Seconds to wait (refused), or 0: allowed, and failed until `succeeded`."""
        ...

    def succeeded(self, user: str, address: str) -> None: ...


class Faces(Protocol):
    """Known people: several face embeddings (samples) per person."""

    def add(
        self,
        name: str,
        embedding: np.ndarray,
        model: str,
        source: str = "",
        thumbnail: bytes | None = None,
    ) -> str:
        """A sample of `name`; `thumbnail`: a small JPEG of the face, for the console."""
        ...

    def thumbnail(self, sample_id: str) -> bytes | None: ...
    def remove(self, name: str, sample_id: str | None = None) -> int: ...
    def create(self, name: str) -> bool:
        """A person with no samples yet (CompreFace's subjects); False if already known."""
        ...

    def rename(self, old: str, new: str) -> int:
        """Move `old`'s samples to `new` (merging when `new` exists); samples moved."""
        ...

    def sample(self, sample_id: str) -> tuple[Sample, list[float]] | None: ...
    def remove_sample(self, sample_id: str) -> Sample: ...
    def clear(self) -> int:
        """Forget everyone; how many people there were."""
        ...

    def samples(self) -> list[Sample]: ...
    def names(self) -> list[str]: ...
    def ranking(self, embedding: np.ndarray, model: str) -> Sequence[Match]: ...
    def match(self, embedding: np.ndarray, model: str) -> Match | None: ...


@dataclass(frozen=True)
class NewSighting:
    """A face recognition saw, as the memory of faces seen keeps it (see mlapi.sightings)."""

    seen: float  # when (Unix time)
    model: str  # the faceprint model of `embedding`
    embedding: np.ndarray  # L2-normalised
    box: tuple[int, int, int, int]
    quality: float  # 0..1 (mlapi.sightings.quality)
    picture: bytes  # a small JPEG of the face
    person: str | None = None  # who recognition named, or None: unknown
    similarity: float = 0.0  # to `person`, on the calibrated scale
    source: str = ""  # the camera or source the client named, if any
    route: str = ""  # the route (or command) that saw it
    client: str = ""  # the user (and key) that sent it


class Sighting(NamedTuple):  # a tuple: a listing makes 10,000 of them at once
    id: str
    seen: float
    model: str
    box: tuple[int, int, int, int]
    quality: float
    person: str | None  # None: unknown (then `cluster` is set)
    similarity: float
    source: str
    route: str
    client: str
    cluster: str | None


@dataclass(frozen=True)
class Cluster:
    """Unknown sightings grouped as one person (see mlapi.sightings.clustering)."""

    id: str
    model: str
    count: int
    first_seen: float
    last_seen: float
    centroid: np.ndarray  # the L2-normalised mean of its sightings' embeddings
    sightings: tuple[Sighting, ...]  # the best first (by quality), or all of them


@dataclass(frozen=True)
class Retention:
    """How long and how many sightings are kept (oldest dropped first), how soon one source's
    same face is kept again, and where an unknown face joins a group."""

    days: float = 30.0
    most: int = 10_000
    every: float = 10.0  # seconds; 0: keep every sighting
    join_at: float = 0.67  # calibrated similarity to a group's centroid


class Sightings(Protocol):
    """The faces recognition saw: unknown ones grouped into clusters as they arrive, known
    ones under their person, each with a picture, for naming and for a person's history."""

    def record(self, batch: Sequence[NewSighting], keep: Retention) -> int:
        """Keep `batch`, each unknown face joining the nearest cluster of its model at
        `keep.join_at` or more (else starting one); drops what `keep` bounds. How many were
        kept (a face the same source showed within `keep.every` seconds is not)."""
        ...

    def clusters(self, best: int = 6) -> list[Cluster]:
        """Every cluster, the most recently seen first, each with its `best` sightings."""
        ...

    def cluster(self, cluster_id: str) -> Cluster:
        """One cluster with all its sightings (best first); UnknownSighting if none."""
        ...

    def embeddings(self, sighting_ids: Sequence[str]) -> dict[str, np.ndarray]: ...
    def picture(self, sighting_id: str) -> bytes | None: ...
    def sighting(self, sighting_id: str) -> Sighting:
        """One sighting; UnknownSighting if there is none."""
        ...

    def attribute(self, sighting_ids: Sequence[str], person: str) -> int:
        """These sightings become `person`'s (leaving their clusters); how many."""
        ...

    def unattribute(self, sighting_id: str) -> str:
        """A sighting that was not its person after all: unknown again, in a cluster of its
        own; the cluster's id."""
        ...

    def merge(self, cluster_ids: Sequence[str]) -> str:
        """The clusters as one (the first's id); UnknownSighting for a missing one."""
        ...

    def move_out(self, sighting_id: str) -> str:
        """One sighting out of its cluster into a new one; the new cluster's id."""
        ...

    def forget(self, cluster_id: str) -> int:
        """Delete a cluster and its sightings; how many."""
        ...

    def forget_sighting(self, sighting_id: str) -> None: ...
    def forget_all(self) -> int:
        """Delete every sighting, known and unknown; how many there were."""
        ...

    def seen(self, person: str, limit: int = 50, offset: int = 0) -> list[Sighting]:
        """`person`'s sightings, newest first."""
        ...

    def renamed(self, old: str, new: str) -> int:
        """A person's sightings follow the gallery's rename."""
        ...

    def last_seen(self) -> dict[str, float]:
        """Each person's latest sighting."""
        ...

    def warm(self) -> None:
        """Bring what the listings read up to date after another process's or replica's
        writes (cheap when there were none): the server calls it when idle, so a listing
        seldom waits for a re-read."""
        ...


class Plates(Protocol):
    """Known plates: names for plates, and for the plates a pattern matches."""

    def add(self, name: str, plate: str = "", pattern: str = "") -> KnownPlate:
        """Name `plate` (spaces, dots and hyphens dropped, upper-cased) or every plate that
        `pattern` matches in full; exactly one of them. Adding what is already there is
        no change; a plate another name has is PlateTaken."""
        ...

    def remove(self, name: str) -> int:
        """Forget every plate and pattern of `name`: how many; UnknownPlate when none."""
        ...

    def known(self) -> list[KnownPlate]:
        """Every known plate and pattern, by name, then as added."""
        ...

    def match(self, plate: str) -> KnownPlate | None:
        """The known plate a read plate is (see matching.PlateIndex), or None."""
        ...


class ConsoleSessions(Protocol):
    """Signed-in browsers of the web console. Only a digest of each session's secret is
    kept, so the stored rows cannot be replayed; closing one ends it on every replica."""

    def open(self, user: str, stamp: str) -> tuple[str, str]:
        """A new session: (its secret, for the cookie; its CSRF token)."""
        ...

    def find(self, secret: str) -> ConsoleSession | None: ...
    def close(self, secret: str) -> None: ...


@dataclass(frozen=True)
class ConsoleSession:
    user: str
    csrf: str
    stamp: str  # the user's password stamp when it began (see Accounts.stamp)
    expires: float


@dataclass(frozen=True)
class Stores:
    accounts: Accounts
    secret: SigningSecret
    logins: LoginAttempts
    faces: Faces
    sessions: ConsoleSessions
    plates: Plates
    sightings: Sightings
    close: Callable[[], None] = lambda: None  # gives back connections, where there are any
    where: str = ""  # for people: the folder, or the database's URL without its password


DATABASE_ENV = "MLAPI_DATABASE_URL"


def too_many_keys(user: str, cap: int) -> UserError:
    """The refusal of one key more than `cap` (StoreSettings.max_keys_per_user)."""
    return UserError(
        f"{user!r} already has {cap} API keys, the most one user may have "
        "(--max-keys-per-user): revoke one first, in the console or with "
        "`mlapi keys revoke ID`"
    )


def open_stores(
    folder: Path | None = None,
    database: str | None = None,
    settings: StoreSettings | None = None,
) -> Stores:
    """The stores in the PostgreSQL database at `database` (default: $MLAPI_DATABASE_URL,
    its schema brought up to date), else in TinyDB files under `folder` (default: the data
    folder). `settings`: timeouts and per-user caps (default: from the environment)."""
    settings = settings or StoreSettings.from_env()
    url = database if database is not None else os.environ.get(DATABASE_ENV, "")
    if url:
        return _database_stores(url, settings)
    from mlapi.paths import data_dir
    from mlapi.stores.console_sessions import FileSessions
    from mlapi.stores.gallery import Gallery
    from mlapi.stores.known_plates import FilePlates
    from mlapi.stores.logins import FileLoginAttempts
    from mlapi.stores.secret import FileSecret
    from mlapi.stores.sightings import FileSightings
    from mlapi.stores.users import UserStore

    folder = folder or data_dir()
    return Stores(
        accounts=UserStore(folder / "users.json", max_keys=settings.max_keys_per_user),
        secret=FileSecret(folder / "jwt.secret"),
        logins=FileLoginAttempts(folder / "logins.json"),
        faces=Gallery(folder / "gallery.json"),
        sessions=FileSessions(
            folder / "sessions.json", max_per_user=settings.max_sessions_per_user
        ),
        plates=FilePlates(folder / "plates.json"),
        sightings=FileSightings(folder / "sightings.json"),
        where=str(folder),
    )


def _database_stores(url: str, settings: StoreSettings) -> Stores:
    from mlapi.stores import pg_gallery, pg_sightings, postgres
    from mlapi.stores.database import Database, shown_url

    db = Database(url, timeout=settings.db_timeout)
    try:
        db.upgrade()
    except BaseException:
        db.close()
        raise
    return Stores(
        accounts=postgres.PgAccounts(db, max_keys=settings.max_keys_per_user),
        secret=postgres.PgSecret(db),
        logins=postgres.PgLoginAttempts(db),
        faces=pg_gallery.PgGallery(db),
        sessions=postgres.PgSessions(db, max_per_user=settings.max_sessions_per_user),
        plates=postgres.PgPlates(db),
        sightings=pg_sightings.PgSightings(db),
        close=db.close,
        where=shown_url(url),
    )
