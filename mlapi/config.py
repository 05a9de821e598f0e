"""Every setting of the engine and the server, with its default, written once: the CLI's
options take their defaults from these dataclasses. Nothing heavy is imported here, so
`mlapi --help` stays instant."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_MAX_PIXELS = 50_000_000  # 50 MP: every real camera, not a decompression bomb
# A network smaller than this runs too briefly to gain from a second thread: after a pause,
# BlazeFace (3 MB) took 6.4-8.5 ms on two threads against 5.4 on one, the expression net
# (2 MB) 4.3-7.1 against 4.1; NanoDet and FaceRes (21-23 MB) took 0.6x their one-thread time.
WIDE_MIN_BYTES = 8 * 1024 * 1024
CPU = ("CPUExecutionProvider",)
Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


@dataclass(frozen=True)
class RuntimeConfig:
    workers: int = 2  # inference threads (the bounded pool)
    intra_op_threads: int = 1  # onnxruntime threads per session run
    # Threads for a request that runs alone (nothing else running or waiting) or on the
    # express lane: such a request spreads networks of WIDE_MIN_BYTES or more over every
    # core, a busy server runs one core per request. Same answers either way (onnxruntime
    # splits work, not sums, across threads; checked bit for bit in tests).
    lone_threads: int = field(default_factory=lambda: min(os.cpu_count() or 1, 4))
    # Images this small (pixels: a 416×416 frame, a face crop) also have an express worker
    # of their own (see scheduler).
    express_pixels: int = 200_000
    max_pixels: int = DEFAULT_MAX_PIXELS
    # How long a multi-threaded session's helpers wait awake for the next operator before
    # sleeping. Sleeping at once left a lone request after a pause no faster on two threads
    # than on one (an idle core woken for each operator); an unbounded spin burned 50 ms of
    # the other core after every run. `bench/benchmark.py --compare spin=0 spin=1000
    # --pause 0.3` measures it.
    spin_microseconds: int = 1000
    providers: tuple[str, ...] = CPU  # onnxruntime execution providers, in preference order


@dataclass(frozen=True)
class ServerConfig:
    # loaded and warmed before ready
    models: tuple[str, ...] = (
        "objects",
        "faces",
        "genderage",
        "emotion",
        "faceprint",
        "embeddings",
    )
    max_body: int = 20 * 1024 * 1024
    max_queue: int = 16  # requests admitted beyond the busy workers (reading, or queued)
    max_waiting: int = 256  # requests that may wait (headers only) for admission
    max_wait: float = 60.0  # seconds a request may wait for admission before 503
    max_parts: int = 32  # multipart parts per request
    max_field: int = 64 * 1024  # bytes of a form field (not a file)
    # Forms whose key comes after their image (Double Take) are read whole before the key
    # is known: at most this many at once, each within max_body; more wait up to 5 s, then 503.
    max_keyless_bodies: int = 4
    read_timeout: float = 30.0
    allow_anonymous: bool = False
    allow_url_fetch: bool = False
    url_networks: Networks = ()  # private networks URL fetching may reach (the operator's)
    keyless_networks: Networks = ()  # clients here may call keyless_dialects without a key
    keyless_dialects: tuple[str, ...] = ("deepstack",)
    public_metrics: bool = False  # GET /metrics without credentials
    uploads: Path | None = None
    token_lifetime: int = 3600  # seconds
    # zm_detect's event path: the ZoneMinder portal the server reads event frames from.
    zm_portal: str = ""
    zm_user: str = ""
    zm_password: str = field(default="", repr=False)
    # One event request's whole time (login, sleeps, retries, downloads, inference), and
    # how many of one user's event requests may be in flight at once (more: 429).
    zm_event_timeout: float = 30.0
    zm_events_per_user: int = 2
    # Proxies (HAProxy, nginx) whose X-Forwarded-For / Forwarded headers are believed; from
    # anywhere else the connection's own address is the client's.
    trusted_proxies: Networks = ()
    # The address clients reach this server at (https://vision.lan), for the console's
    # snippets and the keyless same-origin check; else the listening address.
    public_url: str = ""


@dataclass(frozen=True)
class StoreSettings:
    """Bounds on what the stores keep and how long they wait (serve's options, or the
    environment for the other commands)."""

    db_timeout: float = 2.0  # seconds for one database statement, and to connect
    max_keys_per_user: int = 50  # API keys; creating one more is refused
    max_sessions_per_user: int = 10  # console sessions; the oldest is closed for a new one

    @classmethod
    def from_env(cls) -> StoreSettings:
        def number(name: str, default: float) -> float:
            raw = os.environ.get(name, "")
            try:
                return float(raw) if raw else default
            except ValueError:
                return default

        return cls(
            db_timeout=number("MLAPI_DB_TIMEOUT", cls.db_timeout),
            max_keys_per_user=int(number("MLAPI_MAX_KEYS_PER_USER", cls.max_keys_per_user)),
            max_sessions_per_user=int(
                number("MLAPI_MAX_SESSIONS_PER_USER", cls.max_sessions_per_user)
            ),
        )


@dataclass
class StreamConfig:
    """`mlapi stream`'s settings (see its options)."""

    source: str
    every: int = 1
    fps: float | None = None
    resize: int | None = None
    changes_only: bool = False
    min_iou: float = 0.5
    annotate: Path | None = None
    webhook: str | None = None
    command: str | None = None
    max_frames: int | None = None
    reconnect: bool = True
    workers: int = RuntimeConfig.workers  # frames in flight
