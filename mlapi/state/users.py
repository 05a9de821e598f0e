"""Users (argon2id password hashes) and API keys in one TinyDB file: the embedded
`Accounts` store."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from tinydb import Query

from mlapi import text
from mlapi.errors import UserError
from mlapi.state import KEY_PREFIX, ApiKey
from mlapi.state.files import FileSnapshot, locked_db

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 8


class UserStore:
    def __init__(self, path: Path, hasher: PasswordHasher | None = None) -> None:
        self.path = path
        self.hasher = hasher or PasswordHasher()  # argon2id with the library's defaults
        # Verifying against this keeps unknown users as slow as wrong passwords.
        self._dummy_hash = self.hasher.hash(secrets.token_hex(16))
        self._snapshot = FileSnapshot(self.path)

    def _rows(self, table: str, **match: Any) -> list[dict[str, Any]]:
        rows = self._snapshot.read()[0].get(table, {}).values()
        return [r for r in rows if all(r.get(k) == v for k, v in match.items())]

    # -- users ---------------------------------------------------------------------------
    def add(self, name: str, password: str) -> None:
        self._check_name(name)
        self._check_password(password)
        digest = self.hasher.hash(password)
        with locked_db(self.path) as db:
            if db.table("users").search(Query().name == name):
                raise UserError(f"user {name!r} already exists")
            db.table("users").insert({"name": name, "hash": digest, "created": time.time()})

    def set_password(self, name: str, password: str) -> None:
        self._check_password(password)
        digest = self.hasher.hash(password)
        with locked_db(self.path) as db:
            if not db.table("users").update({"hash": digest}, Query().name == name):
                raise UserError(f"no user named {name!r}")

    def remove(self, name: str) -> None:
        with locked_db(self.path) as db:
            if not db.table("users").remove(Query().name == name):
                raise UserError(f"no user named {name!r}")
            db.table("keys").remove(Query().user == name)

    def names(self) -> list[str]:
        return sorted(u["name"] for u in self._rows("users"))

    def exists(self, name: str) -> bool:
        return bool(self._rows("users", name=name))

    def session(self, name: str) -> str | None:
        """A stamp that tokens carry and that changes when the password does (a new salt)
        and when the user is removed and made again: older tokens stop working."""
        found = self._rows("users", name=name)
        return _digest(found[0]["hash"])[:16] if found else None

    def verify(self, name: str, password: str) -> bool:
        """True if the password is right; rehashes when the hashing parameters changed."""
        found = self._rows("users", name=name)
        stored = found[0]["hash"] if found else self._dummy_hash
        try:
            self.hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False
        if not found:
            return False
        if self.hasher.check_needs_rehash(stored):
            with locked_db(self.path) as db:
                db.table("users").update({"hash": self.hasher.hash(password)}, Query().name == name)
        return True

    # -- API keys ------------------------------------------------------------------------
    def create_key(self, user: str, name: str) -> str:
        """A new key for `user`; the secret is returned once and only its hash is stored."""
        key_id = secrets.token_hex(4)
        secret = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"
        with locked_db(self.path) as db:
            if not db.table("users").search(Query().name == user):
                raise UserError(f"no user named {user!r}")
            db.table("keys").insert(
                {
                    "id": key_id,
                    "name": name,
                    "user": user,
                    "sha256": _digest(secret),
                    "created": time.time(),
                }
            )
        return secret

    def api_keys(self) -> list[ApiKey]:
        rows = self._rows("keys")
        return [ApiKey(r["id"], r["name"], r["user"], r["created"]) for r in rows]

    def revoke_key(self, key_id: str) -> None:
        with locked_db(self.path) as db:
            if not db.table("keys").remove(Query().id == key_id):
                raise UserError(f"no API key with id {key_id!r}")

    def key_user(self, secret: str) -> str | None:
        """The user an API key belongs to, or None."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 128:
            return None
        key_id = secret[len(KEY_PREFIX) :].split("_", 1)[0]
        found = self._rows("keys", id=key_id)
        if found and hmac.compare_digest(found[0]["sha256"], _digest(secret)):
            return str(found[0]["user"])
        return None

    @staticmethod
    def _check_name(name: str) -> None:
        if not NAME_RE.match(name):
            raise UserError("user names are 1-64 letters, digits, '_', '.', '@' or '-'")

    @staticmethod
    def _check_password(password: str) -> None:
        text.check(password, "a password")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"passwords need at least {MIN_PASSWORD} characters")


def _digest(secret: str) -> str:
    # API keys carry 256 random bits, so a fast hash is enough to keep them unreadable at rest.
    return hashlib.sha256(secret.encode()).hexdigest()
