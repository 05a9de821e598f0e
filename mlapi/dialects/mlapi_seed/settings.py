"""The mlapi dialect's own settings: the ZoneMinder portal zm_detect's event path reads
frames from. `mlapi serve` offers each as an option (see mlapi.config.setting); this module
imports nothing heavy, so the CLI reads it without loading the server."""

from __future__ import annotations

from dataclasses import dataclass

from mlapi.config import setting


@dataclass(frozen=True)
class ZoneMinderSettings:
    portal: str = setting(
        "",
        help="The ZoneMinder portal (e.g. https://nvr.lan/zm) whose event frames zm_detect's "
        "event path asks for; its host must be in --allow-url-networks.",
        option="--zm-portal",
        env="MLAPI_ZM_PORTAL",
        metavar="URL",
    )
    user: str = setting(
        "", help="The ZoneMinder user the server logs in as.", option="--zm-user",
        env="MLAPI_ZM_USER",
    )  # fmt: skip
    password: str = setting(
        "",
        help="A file holding the ZoneMinder user's password (or set MLAPI_ZM_PASSWORD; never "
        "on the command line).",
        secret_file="--zm-password-file",
        env="MLAPI_ZM_PASSWORD",
    )
    # One event request's whole time (login, sleeps, retries, downloads, inference), and
    # how many of one user's event requests may be in flight at once (more: 429).
    event_timeout: float = setting(
        30.0,
        help="Seconds one zm_detect event request may take in all (login, waits, retries, "
        "frames, detection).",
        option="--zm-event-timeout",
        env="MLAPI_ZM_EVENT_TIMEOUT",
        low=1,
        high=600,
    )
    events_per_user: int = setting(
        2,
        help="zm_detect event requests one user may have in flight; more get 429.",
        option="--zm-events-per-user",
        env="MLAPI_ZM_EVENTS_PER_USER",
        low=1,
        high=1000,
    )
