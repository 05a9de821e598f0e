"""The `mlapi` command line: `main` and its commands, one module per group."""

from mlapi.cli import accounts, database, detect, faces, models, plates, serve, stream
from mlapi.cli.common import main

__all__ = [
    "accounts",
    "database",
    "detect",
    "faces",
    "main",
    "models",
    "plates",
    "serve",
    "stream",
]
