"""A client of a ZoneMinder portal: what mlapi 2.x did for zm_detect's event path.

zm_detect 6.1 sends an event id (`stream`) and `stream_options` instead of an image; the
server logs in to the portal it was configured with (`--zm-portal`, `--zm-user`,
`--zm-password-file`, as mlapi 2.x's `portal`, `user`, `password`) and reads the event's
frames as ZoneMinder's web API serves them: `index.php?view=image&eid=E&fid=F&token=T`,
where F is a frame number, `snapshot` (the highest-scored frame) or `alarm` (the first
alarmed one). Every fetch goes through the URL-fetch policy: the portal's address must be
public or inside `--allow-url-networks`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from dataclasses import dataclass
from urllib.parse import quote

from mlapi.config import Networks
from mlapi.errors import (
    FetchRefused,
    MlapiError,
    ZoneMinderError,
)
from mlapi.images import sniff

log = logging.getLogger("mlapi.zoneminder")
FRAME_ID = re.compile(r"^(snapshot|alarm|[0-9]{1,9})$")
EVENT_ID = re.compile(r"^[0-9]{1,18}$")
MAX_FRAMES = 10  # frames one request may ask for
MAX_ATTEMPTS = 3  # fetches of one frame
MAX_SLEEP = 5.0  # seconds between attempts, or before the first
FRAME_TIMEOUT = 10.0  # seconds for one frame


@dataclass(frozen=True)
class Portal:
    url: str  # e.g. https://nvr.lan/zm
    user: str = ""
    password: str = ""


@dataclass(frozen=True)
class FrameOptions:
    """What of zm_detect's `stream_options` the server honours, within its own bounds."""

    frames: tuple[str, ...] = ("snapshot", "alarm")
    attempts: int = 1
    sleep: float = 3.0
    delay: float = 0.0
    resize: int | None = None
    strategy: str = "first"

    @classmethod
    def parse(cls, raw: object) -> FrameOptions:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise MlapiError("stream_options must be an object")
        frame_set = raw.get("frame_set", "snapshot,alarm")
        items = frame_set.split(",") if isinstance(frame_set, str) else frame_set
        if not isinstance(items, list):
            raise MlapiError("stream_options.frame_set must be a list or comma-separated")
        frames = tuple(str(i).strip() for i in items if str(i).strip())
        if not frames or len(frames) > MAX_FRAMES or not all(FRAME_ID.match(f) for f in frames):
            raise MlapiError(
                f"stream_options.frame_set: 1-{MAX_FRAMES} of snapshot, alarm or frame numbers"
            )
        strategy = str(raw.get("strategy", "first"))
        if strategy not in ("first", "most", "most_unique", "most_models"):
            raise MlapiError("stream_options.strategy: first, most, most_unique or most_models")
        resize = raw.get("resize")
        if resize in (None, "", "no", False):
            width = None
        else:
            try:
                width = int(resize)
            except (TypeError, ValueError):
                raise MlapiError("stream_options.resize: a width in pixels, or no") from None
            if not 16 <= width <= 8192:
                raise MlapiError("stream_options.resize: a width from 16 to 8192")
        return cls(
            frames=frames,
            attempts=int(_bounded(raw.get("max_attempts", 1), 1, MAX_ATTEMPTS, "max_attempts")),
            sleep=_bounded(raw.get("sleep_between_attempts", 3), 0, MAX_SLEEP, "sleep"),
            delay=_bounded(raw.get("delay", 0), 0, MAX_SLEEP, "delay"),
            resize=width,
            strategy="most" if strategy == "most_models" else strategy,
        )


def _bounded(value: object, low: float, high: float, name: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise MlapiError(f"stream_options.{name} must be a number") from None
    return min(max(number, low), high)


@dataclass
class Visit:
    """One event request's dealings with the portal: it may ask for a fresh login once
    (a token ZoneMinder refuses after that is the portal's fault, not a stale token)."""

    relogged: bool = False


class ZoneMinder:
    """A portal's frames, logged in once and again when the token expires or is refused
    (at most once per request: see `Visit`)."""

    def __init__(self, portal: Portal, networks: Networks, max_bytes: int) -> None:
        self.portal, self.networks, self.max_bytes = portal, networks, max_bytes
        self._token: str | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def _fetch(self, url: str, form: dict[str, str] | None = None) -> tuple[int, bytes]:
        from mlapi.fetch import fetch

        return await fetch(url, self.max_bytes, FRAME_TIMEOUT, self.networks, form=form)

    async def _login(self, stale: str | None = None) -> str | None:
        """An access token, or None for a portal without authentication; with `stale` (a
        token the portal refused), a fresh one unless another request already got it."""
        if not self.portal.user:
            return None
        async with self._lock:
            if self._token and self._token != stale and time.monotonic() < self._expires:
                return self._token
            self._token = None
            form = {"user": self.portal.user, "pass": self.portal.password}
            try:
                status, body = await self._fetch(f"{self.portal.url}/api/host/login.json", form)
                document = json.loads(body) if status == 200 else {}
            except (FetchRefused, ValueError, RecursionError) as exc:
                raise ZoneMinderError(f"cannot log in to ZoneMinder: {_reason(exc)}") from None
            if not isinstance(document, dict):
                raise ZoneMinderError("ZoneMinder's login answer is not a JSON object")
            token = document.get("access_token")
            if not isinstance(token, str) or not token:
                raise ZoneMinderError(f"ZoneMinder refused the login (HTTP {status})")
            lifetime = _lifetime(document.get("access_token_expires", 3600))
            self._token, self._expires = token, time.monotonic() + max(lifetime - 60, 30)
            return token

    async def frame(
        self, event: str, frame: str, options: FrameOptions, visit: Visit
    ) -> bytes | None:
        """The frame's image, or None when ZoneMinder has none to give (after retries).
        A token refused again after the request's one fresh login is a ZoneMinderError."""
        for attempt in range(options.attempts):
            if attempt:
                await asyncio.sleep(options.sleep)
            stale: str | None = None
            while True:
                token = await self._login(stale)
                url = f"{self.portal.url}/index.php?view=image&eid={event}&fid={frame}"
                if token:
                    url += f"&token={quote(token)}"
                try:
                    status, body = await self._fetch(url)
                except FetchRefused as exc:
                    log.info("event %s frame %s: %s", event, frame, _reason(exc))
                    status, body = 0, b""  # a slow or unreachable frame: try again, or move on
                if status != 401 or not token:
                    break
                if visit.relogged:
                    raise ZoneMinderError("ZoneMinder refused the login's token (HTTP 401)")
                visit.relogged, stale = True, token  # the token was refused: log in again once
            if status == 200 and sniff(body):
                return body
            if status:
                log.info("event %s frame %s: HTTP %s, no image", event, frame, status)
        return None


def _lifetime(value: object) -> float:
    """A login's `access_token_expires` in seconds (ZoneMinder sends a number)."""
    if isinstance(value, (int, float, str)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except ValueError:
            seconds = math.nan
        if math.isfinite(seconds):
            return seconds
    raise ZoneMinderError("ZoneMinder's login answer has no valid access_token_expires")


def _reason(exc: Exception) -> str:
    message = getattr(exc, "message", str(exc))
    return str(message).split("?")[0]  # never a URL's query (it may hold a token)
