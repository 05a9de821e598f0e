"""The token signing secret in a private file, generated on first start (never built in)."""

from __future__ import annotations

import secrets
from pathlib import Path

from mlapi.errors import MlapiError
from mlapi.stores.files import create_private


class FileSecret:
    def __init__(self, path: Path) -> None:
        self.path = path

    def get(self) -> bytes:
        if not self.path.exists():  # two servers starting at once must end with one secret
            create_private(self.path, secrets.token_hex(32).encode())
        secret = self.path.read_bytes().strip()
        if len(secret) < 32:
            raise MlapiError(f"{self.path} holds too short a secret; delete it to make a new one")
        return secret
