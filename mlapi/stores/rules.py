"""What every store implementation checks and derives the same way: names, passwords,
password hashes and their stamps, API keys and their digests, stored embeddings, known
plates and their patterns."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

import numpy as np
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mlapi import text
from mlapi.errors import GalleryError, PlateError, TextError, UserError
from mlapi.stores import KEY_PREFIX, KnownPlate

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
PERSON_NAME = re.compile(r"^[^\x00-\x1f\x7f-\x9f/\\]{1,100}$")
MIN_PASSWORD = 8
EMBEDDING_DIGITS = 7
PLATE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 .·-]*")  # letters and digits, separators between
MAX_PLATE = 16  # letters and digits
MAX_PATTERN = 200  # characters, as the plates detector's `format`


def user_name(name: str) -> str:
    if not USER_NAME.match(name):
        raise UserError("user names are 1-64 letters, digits, '_', '.', '@' or '-'")
    return name


def password(value: str) -> str:
    text.check(value, "a password")
    if len(value) < MIN_PASSWORD:
        raise UserError(f"passwords need at least {MIN_PASSWORD} characters")
    return value


def person_name(name: str) -> str:
    """A person's name as stored: stripped, valid text, 1-100 characters, no slashes."""
    name = name.strip()
    try:
        text.name(name, "a person's name")
    except TextError as exc:
        raise GalleryError(exc.message) from None
    if not PERSON_NAME.match(name):
        raise GalleryError("a person's name is 1-100 characters, without / or \\")
    return name


def known_plate(name: str, plate: str = "", pattern: str = "") -> KnownPlate:
    """A known plate as stored, checked where it enters (PlateError, a 400, otherwise): the
    name as a person's; the plate's letters and digits, upper-cased; a pattern that
    compiles, at most MAX_PATTERN characters."""
    if bool(plate) == bool(pattern):
        raise PlateError("give a plate or a pattern (a regular expression), one of them")
    name = name.strip()
    try:
        text.name(name, "a plate's name")
        text.name(plate or pattern, "the plate" if plate else "the pattern")
    except TextError as exc:
        raise PlateError(exc.message) from None
    if not PERSON_NAME.match(name):
        raise PlateError("a plate's name is 1-100 characters, without / or \\")
    if plate:
        plate = plate.strip()
        letters = text.normalise_plate(plate)
        if not PLATE.fullmatch(plate) or not 1 <= len(letters) <= MAX_PLATE:
            raise PlateError(
                f"a plate is 1-{MAX_PLATE} letters A-Z and digits, with spaces, dots or "
                "hyphens between them; for a pattern, give a regular expression"
            )
        return KnownPlate(name, plate=letters)
    if len(pattern) > MAX_PATTERN:
        raise PlateError(f"the pattern is longer than {MAX_PATTERN} characters")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise PlateError(f"the pattern is not a regular expression ({exc})") from None
    return KnownPlate(name, pattern=pattern)


def stored_embedding(embedding: np.ndarray) -> list[float]:
    return [round(float(v), EMBEDDING_DIGITS) for v in embedding]


def digest(secret: str) -> str:
    # API keys carry 256 random bits, so a fast hash is enough to keep them unreadable at rest.
    return hashlib.sha256(secret.encode()).hexdigest()


def stamp(password_hash: str) -> str:
    """The password stamp of a user (see Accounts.stamp): it changes with the hash."""
    return digest(password_hash)[:16]


def new_key() -> tuple[str, str]:
    """(id, secret) of a new API key; only the secret's digest is ever stored."""
    key_id = secrets.token_hex(4)
    return key_id, f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def key_id(secret: str) -> str | None:
    """The id part of something that looks like an API key, else None."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > 128:
        return None
    return secret[len(KEY_PREFIX) :].split("_", 1)[0]


def key_matches(stored_digest: str, secret: str) -> bool:
    return hmac.compare_digest(stored_digest, digest(secret))


class Passwords:
    """argon2id hashing; verifying an unknown user costs as much as a wrong password."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self.hasher = hasher or PasswordHasher()  # argon2id with the library's defaults
        self._dummy = self.hasher.hash(secrets.token_hex(16))

    def hash(self, value: str) -> str:
        return self.hasher.hash(value)

    def verify(self, stored: str | None, value: str) -> bool:
        try:
            self.hasher.verify(stored or self._dummy, value)
        except (VerificationError, InvalidHashError):
            return False
        return stored is not None

    def needs_rehash(self, stored: str) -> bool:
        return self.hasher.check_needs_rehash(stored)
