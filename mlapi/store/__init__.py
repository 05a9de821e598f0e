"""Model catalog, fetching, conversion and the on-disk cache."""

from mlapi.store.store import ModelCache

__all__ = ["ModelCache"]
