"""Log lines: one per request (keys masked), one per request aiohttp cannot parse."""

from __future__ import annotations

import logging
from typing import TypeVar

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from mlapi.web.answers import (
    safe_path,
)
from mlapi.web.auth import (
    client,
)
from mlapi.web.state import (
    USER,
)

log = logging.getLogger("mlapi.server")
T = TypeVar("T")


class QuietBadRequests(logging.Filter):
    """aiohttp logs a full traceback for every unparsable request (a request line of `*`,
    an oversized header) after answering it 400: one line says enough."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            record.msg, record.args = (
                "bad request (%s): %s",
                (
                    exc.__class__.__name__,
                    safe_path(str(exc.message)[:200]),
                ),
            )
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class AccessLog(AbstractAccessLogger):
    """One line per request: address, user, request (API keys in /hg/KEY/… masked), status."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = safe_path(request.path)
        user = request.get(USER) or "-"
        try:
            address = client(request)  # type: ignore[arg-type]
        except (AttributeError, RuntimeError):  # a request that never reached the app
            address = request.remote
        self.logger.info(
            '%s %s "%s %s" %s %.1fms',
            address,
            user,
            request.method,
            path,
            response.status,
            time * 1000,
        )
