"""A small client for a remote `mlapi serve`: log in once, then detect like the local CLI."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from mlapi.errors import MlapiError, RemoteError
from mlapi.paths import config_dir
from mlapi.stores.files import write_private

API_KEY_ENV = "MLAPI_API_KEY"  # an API key (mlapi keys create): no login, no expiry


def tokens_path() -> Path:
    return config_dir() / "tokens.json"


def _normalise(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise MlapiError(f"{url!r} is not an http(s) server URL")
    return url.rstrip("/")


def _request(url: str, data: bytes, headers: dict[str, str], timeout: float = 60) -> bytes:
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            message = json.loads(body).get("msg") or body.decode()
        except (ValueError, AttributeError):
            message = body.decode(errors="replace") or exc.reason
        if exc.code == 401 and not url.endswith("/api/v1/login"):  # a login says it itself
            message += f" (log in again with mlapi login, or set {API_KEY_ENV} to an API key)"
        raise RemoteError(exc.code, f"server answered {exc.code}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise RemoteError(503, f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None


def login(url: str, username: str, password: str) -> None:
    """Get a token and keep it (mode 0600) in the user config dir for later commands."""
    url = _normalise(url)
    body = json.dumps({"username": username, "password": password}).encode()
    answer = json.loads(_request(f"{url}/api/v1/login", body, {"Content-Type": "application/json"}))
    path = tokens_path()
    try:
        saved = json.loads(path.read_text())
    except (OSError, ValueError):
        saved = {}
    saved[url] = answer["access_token"]
    write_private(path, json.dumps(saved, indent=2).encode())


def saved_token(url: str) -> str:
    url = _normalise(url)
    try:
        return str(json.loads(tokens_path().read_text())[url])
    except (OSError, ValueError, KeyError):
        raise RemoteError(
            401, f"not logged in to {url}; run: mlapi login {url} (or set {API_KEY_ENV})"
        ) from None


def credential(url: str) -> str:
    """$MLAPI_API_KEY when set (it never expires), else the token `mlapi login` saved."""
    return os.environ.get(API_KEY_ENV) or saved_token(url)


def detect(
    url: str,
    token: str,
    data: bytes,
    models: list[str],
    options: dict[str, dict[str, Any]],
    fmt: str,
    source: str = "",
) -> str:
    """The server's answer for one image, as the exact JSON text it sent; `source` names
    the camera for the faces the server remembers."""
    query: list[tuple[str, str]] = [("format", fmt)]
    if source:
        query.append(("source", source))
    if models:
        query.append(("models", ",".join(models)))
    query += [(f"{m}.{k}", str(v)) for m, opts in options.items() for k, v in opts.items()]
    target = f"{_normalise(url)}/api/v1/detect?{urllib.parse.urlencode(query)}"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/octet-stream"}
    return _request(target, data, headers).decode()


class Remote:
    """Detection on a server with the token `mlapi login` saved: image bytes → JSON text."""

    def __init__(
        self,
        url: str,
        models: list[str],
        options: dict[str, dict[str, Any]],
        fmt: str,
        source: str = "",
    ) -> None:
        self.token = credential(url)
        self.url, self.models, self.options, self.fmt = url, models, options, fmt
        self.source = source

    def __call__(self, data: bytes) -> str:
        return detect(self.url, self.token, data, self.models, self.options, self.fmt, self.source)
