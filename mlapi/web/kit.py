"""Everything a dialect may use of the server, in one place: the only module of `mlapi.web`
that a dialect imports (tests/test_house.py holds every dialect to it).

A dialect is a `Dialect` whose `add_routes(routes)` registers its handlers with their access;
a handler reads its request with `read_upload` or `json_object`, runs detectors with
`run_detection` (or other engine work with `in_pool`), reaches the stores with `in_state`,
and answers with `json_text` or raises an `MlapiError` (rendered in its dialect's body).
"""

from __future__ import annotations

from mlapi.errors import RequestError
from mlapi.web.admission import admit, give_back_slot
from mlapi.web.answers import json_text
from mlapi.web.auth import (
    CSRF_HEADER,
    SESSION_COOKIE,
    authenticate,
    check_password,
    console_session,
    own_host,
    read_credentials,
    signed_in,
)
from mlapi.web.bodies import (
    ANY_OFFSET,
    Upload,
    fetch_for,
    json_object,
    page_param,
    read_upload,
    split_options,
    whole_number,
)
from mlapi.web.dialect import Dialect, Handler, Routes, api_error, plain_error
from mlapi.web.inference import in_pool, run_detection
from mlapi.web.seen import MERGE_BODY, NAME_BODY, Pages, history_params, unknown_params
from mlapi.web.seen import handlers as seen_handlers
from mlapi.web.state import (
    AUTHENTICATED,
    ENGINE,
    SERVER,
    USER,
    ServerState,
    in_state,
    off_loop,
)

__all__ = [
    "ANY_OFFSET",
    "AUTHENTICATED",
    "CSRF_HEADER",
    "ENGINE",
    "MERGE_BODY",
    "NAME_BODY",
    "SERVER",
    "SESSION_COOKIE",
    "USER",
    "Dialect",
    "Handler",
    "Pages",
    "RequestError",
    "Routes",
    "ServerState",
    "Upload",
    "admit",
    "api_error",
    "authenticate",
    "check_password",
    "console_session",
    "fetch_for",
    "give_back_slot",
    "history_params",
    "in_pool",
    "in_state",
    "json_object",
    "json_text",
    "off_loop",
    "own_host",
    "page_param",
    "plain_error",
    "read_credentials",
    "read_upload",
    "run_detection",
    "seen_handlers",
    "signed_in",
    "split_options",
    "unknown_params",
    "whole_number",
]
