"""Model catalog, fetching, conversion and the on-disk cache."""

from mlapi.store.store import ModelStore

__all__ = ["ModelStore"]
