"""Model catalog, fetching, conversion and the on-disk cache."""

from mlapi.store.store import ModelStore, default_cache_dir

__all__ = ["ModelStore", "default_cache_dir"]
