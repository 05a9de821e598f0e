"""JWT access tokens (HS256, pinned) and login rate limiting."""

from __future__ import annotations

import secrets
import time
from collections import defaultdict, deque
from pathlib import Path

import jwt

from mlapi.errors import MlapiError
from mlapi.storage import default_data_dir, write_private

ALGORITHM = "HS256"


class AuthError(MlapiError):
    status = 401


class TokenIssuer:
    """Signs and checks tokens with a secret generated on first start (never built in)."""

    def __init__(self, secret_path: Path | None = None, lifetime: int = 3600) -> None:
        path = secret_path or default_data_dir() / "jwt.secret"
        if not path.exists():
            write_private(path, secrets.token_hex(32).encode())
        self._secret = path.read_bytes().strip()
        if len(self._secret) < 32:
            raise MlapiError(f"{path} holds a secret that is too short; delete it to regenerate")
        self.lifetime = lifetime

    def issue(self, user: str) -> str:
        now = int(time.time())
        claims = {"sub": user, "iat": now, "exp": now + self.lifetime}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def user(self, token: str) -> str:
        """The user a valid token names; AuthError with a reason otherwise."""
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], options={"require": ["exp", "sub"]}
            )
        except jwt.ExpiredSignatureError as exc:
            raise AuthError("token has expired; log in again") from exc
        except jwt.InvalidTokenError as exc:
            raise AuthError("invalid token") from exc
        return str(claims["sub"])


class LoginLimiter:
    """At most `limit` failed logins per window, per user+address and per address."""

    def __init__(self, limit: int = 5, window: float = 300.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures[key]
        while times and times[0] <= now - self.window:
            times.popleft()
        return times

    def retry_after(self, user: str, address: str) -> int:
        """Seconds to wait before another attempt is allowed; 0 when allowed now."""
        now = time.monotonic()
        waits = []
        for key, limit in ((f"{user}\0{address}", self.limit), (address, self.limit * 4)):
            times = self._recent(key, now)
            if len(times) >= limit:
                waits.append(int(times[0] + self.window - now) + 1)
        return max(waits, default=0)

    def failed(self, user: str, address: str) -> None:
        now = time.monotonic()
        for key in (f"{user}\0{address}", address):
            self._recent(key, now).append(now)
        if len(self._failures) > 10_000:  # bound memory under a spray of addresses
            for key in [k for k, v in self._failures.items() if not v]:
                del self._failures[key]

    def succeeded(self, user: str, address: str) -> None:
        self._failures.pop(f"{user}\0{address}", None)
