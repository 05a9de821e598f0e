"""Users (argon2id password hashes) and API keys in one TinyDB file: the embedded
`Accounts` store."""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from tinydb import Query

from mlapi.config import StoreSettings
from mlapi.errors import UserError
from mlapi.stores import ApiKey, rules, too_many_keys
from mlapi.stores.files import FileSnapshot, locked_db


class UserStore:
    def __init__(
        self,
        path: Path,
        hasher: PasswordHasher | None = None,
        max_keys: int = StoreSettings.max_keys_per_user,
    ) -> None:
        self.path, self.max_keys = path, max_keys
        self.passwords = rules.Passwords(hasher)
        self._snapshot = FileSnapshot(self.path)

    def _rows(self, table: str, **match: Any) -> list[dict[str, Any]]:
        rows = self._snapshot.read()[0].get(table, {}).values()
        return [r for r in rows if all(r.get(k) == v for k, v in match.items())]

    # -- users ---------------------------------------------------------------------------
    def add(self, name: str, password: str) -> None:
        rules.user_name(name)
        digest = self.passwords.hash(rules.password(password))
        with locked_db(self.path) as db:
            if db.table("users").search(Query().name == name):
                raise UserError(f"user {name!r} already exists")
            db.table("users").insert({"name": name, "hash": digest, "created": time.time()})

    def set_password(self, name: str, password: str) -> None:
        digest = self.passwords.hash(rules.password(password))
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

    def stamp(self, name: str) -> str | None:
        """A stamp that tokens carry and that changes when the password does (a new salt)
        and when the user is removed and made again: older tokens stop working."""
        found = self._rows("users", name=name)
        return rules.stamp(found[0]["hash"]) if found else None

    def verify(self, name: str, password: str) -> bool:
        """True if the password is right; rehashes when the hashing parameters changed."""
        found = self._rows("users", name=name)
        stored = found[0]["hash"] if found else None
        if not self.passwords.verify(stored, password):
            return False
        if stored is not None and self.passwords.needs_rehash(stored):
            with locked_db(self.path) as db:
                update = {"hash": self.passwords.hash(password)}
                db.table("users").update(update, Query().name == name)
        return True

    # -- API keys ------------------------------------------------------------------------
    def create_key(self, user: str, name: str) -> str:
        """A new key for `user`; the secret is returned once and only its hash is stored."""
        key_id, secret = rules.new_key()
        with locked_db(self.path) as db:
            if not db.table("users").search(Query().name == user):
                raise UserError(f"no user named {user!r}")
            if db.table("keys").count(Query().user == user) >= self.max_keys:
                raise too_many_keys(user, self.max_keys)
            db.table("keys").insert(
                {
                    "id": key_id,
                    "name": name,
                    "user": user,
                    "sha256": rules.digest(secret),
                    "created": time.time(),
                }
            )
        return secret

    def api_keys(self) -> list[ApiKey]:
        rows = self._rows("keys")
        return [
            ApiKey(r["id"], r["name"], r["user"], r["created"], r.get("last_used")) for r in rows
        ]

    def revoke_key(self, key_id: str) -> None:
        with locked_db(self.path) as db:
            if not db.table("keys").remove(Query().id == key_id):
                raise UserError(f"no API key with id {key_id!r}")

    def key_user(self, secret: str) -> str | None:
        """The user an API key belongs to, or None."""
        key_id = rules.key_id(secret)
        found = self._rows("keys", id=key_id) if key_id else []
        if found and rules.key_matches(found[0]["sha256"], secret):
            return str(found[0]["user"])
        return None

    def keys_used(self, used: Mapping[str, float]) -> None:
        if not used:
            return
        with locked_db(self.path) as db:
            keys = db.table("keys")
            for key_id, at in used.items():
                keys.update({"last_used": at}, Query().id == key_id)
