"""JWT access tokens (HS256, pinned) and login rate limiting."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections import deque
from pathlib import Path

import jwt

from mlapi.dbfiles import create_private
from mlapi.errors import AuthError, MlapiError
from mlapi.paths import data_dir

ALGORITHM = "HS256"


class TokenIssuer:
    """Signs and checks tokens with a secret generated on first start (never built in)."""

    def __init__(self, secret_path: Path | None = None, lifetime: int = 3600) -> None:
        path = secret_path or data_dir() / "jwt.secret"
        if not path.exists():  # two servers starting at once must end with one secret
            create_private(path, secrets.token_hex(32).encode())
        self._secret = path.read_bytes().strip()
        if len(self._secret) < 32:
            raise MlapiError(f"{path} holds a secret that is too short; delete it to regenerate")
        self.lifetime = lifetime

    def issue(self, user: str, session: str = "") -> str:
        """A token for `user`; `session` is the user's stamp (see UserStore.session)."""
        now = int(time.time())
        claims = {"sub": user, "ses": session, "iat": now, "exp": now + self.lifetime}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def claims(self, token: str) -> tuple[str, str]:
        """(user, session stamp) of a valid token; AuthError with a reason otherwise."""
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token has expired; log in again") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError("invalid token") from exc
        return str(claims["sub"]), str(claims.get("ses", ""))


class LoginLimiter:
    """At most `limit` failed logins per window, per user+address and per address.

    An attempt counts as failed from the moment it starts and is forgiven only when it
    succeeds, so a burst of concurrent guesses is refused like a sequence of them. Keys are
    digests (a 4 MiB username costs 32 bytes) and at most `max_keys` are kept.
    """

    def __init__(self, limit: int = 5, window: float = 300.0, max_keys: int = 10_000) -> None:
        self.limit, self.window, self.max_keys = limit, window, max_keys
        self._failures: dict[bytes, deque[float]] = {}

    @staticmethod
    def _keys(user: str, address: str) -> tuple[bytes, bytes]:
        pair = hashlib.sha256(f"{address}\0{user}".encode(errors="replace")).digest()
        return pair, hashlib.sha256(address.encode(errors="replace")).digest()

    def _recent(self, key: bytes, now: float) -> deque[float]:
        times = self._failures.get(key)
        if times is None:
            if len(self._failures) >= self.max_keys:  # forget the stalest entries first
                stale = sorted(
                    self._failures, key=lambda k: self._failures[k][-1] if self._failures[k] else 0
                )
                for old in stale[: self.max_keys // 10 or 1]:
                    del self._failures[old]
            times = self._failures[key] = deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def attempt(self, user: str, address: str) -> int:
        """Seconds to wait (the attempt is refused), or 0: the attempt is allowed and counts
        as failed until `succeeded` says otherwise."""
        now = time.monotonic()
        pair, addr = self._keys(user, address)
        waits = []
        for key, limit in ((pair, self.limit), (addr, self.limit * 4)):
            times = self._recent(key, now)
            if len(times) >= limit:
                waits.append(int(times[0] + self.window - now) + 1)
        if waits:
            return max(waits)
        for key in (pair, addr):
            self._recent(key, now).append(now)
        return 0

    def succeeded(self, user: str, address: str) -> None:
        pair, addr = self._keys(user, address)
        self._failures.pop(pair, None)
        times = self._failures.get(addr)
        if times:
            times.pop()  # this attempt was not a failure after all
