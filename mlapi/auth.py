"""JWT access tokens (HS256, pinned), signed with the stores' secret."""

from __future__ import annotations

import time

import jwt

from mlapi.errors import AuthError

ALGORITHM = "HS256"


class TokenIssuer:
    """Signs and checks tokens (the secret: see mlapi.stores.SigningSecret)."""

    def __init__(self, secret: bytes, lifetime: int = 3600) -> None:
        self._secret, self.lifetime = secret, lifetime

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
