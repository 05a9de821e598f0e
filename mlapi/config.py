"""Every setting of the engine and the server, with its default, written once: a field made
with `setting(…)` is also an option of `mlapi serve` with its environment variable, help and
bounds (mlapi/cli/settings.py makes them from this metadata). A dialect declares its own
settings the same way (see mlapi.dialects.mlapi_seed.settings). Nothing heavy is imported
here, so `mlapi --help` stays instant."""

from __future__ import annotations

import contextlib
import dataclasses
import ipaddress
import os
from dataclasses import MISSING, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

DEFAULT_MAX_PIXELS = 50_000_000  # 50 MP: every real camera, not a decompression bomb
# A network smaller than this runs too briefly to gain from a second thread: after a pause,
# BlazeFace (3 MB) took 6.4-8.5 ms on two threads against 5.4 on one, the expression net
# (2 MB) 4.3-7.1 against 4.1; NanoDet and FaceRes (21-23 MB) took 0.6x their one-thread time.
WIDE_MIN_BYTES = 8 * 1024 * 1024
CPU = ("CPUExecutionProvider",)
Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
MIB = 1024 * 1024
T = TypeVar("T")


def option_name(f: dataclasses.Field[Any]) -> str:
    """A setting's `mlapi serve` option: its own, or --FIELD-NAME."""
    return str(f.metadata["option"] or "--" + f.name.replace("_", "-"))


def env_name(f: dataclasses.Field[Any]) -> str:
    """A setting's environment variable: its own, or MLAPI_ and the option's name
    (--max-body-mb: MLAPI_MAX_BODY_MB)."""
    return str(f.metadata["env"] or "MLAPI_" + option_name(f)[2:].upper().replace("-", "_"))


def setting(
    default: Any = MISSING,
    *,
    help: str,
    option: str | None = None,
    low: float | None = None,
    high: float | None = None,
    scale: float | None = None,
    parse: str | None = None,
    metavar: str | None = None,
    factory: Any = MISSING,
    secret_file: str | None = None,
    env: str | None = None,
) -> Any:
    """A settings field that `mlapi serve` offers: `option` (default `--FIELD-NAME`) with the
    environment variable `env` (default: MLAPI_ and the option's name), `help`, bounds `low`..`high`
    (in the option's unit: the field holds the value times `scale`), `parse` (a parser the CLI
    knows by name: models, networks, dialects, public_url), and for a secret, `secret_file`:
    an option naming a file that holds it (the variable holds it itself; never an option)."""
    metadata = {
        "help": help,
        "option": option,
        "low": low,
        "high": high,
        "scale": scale,
        "parse": parse,
        "metavar": metavar,
        "secret_file": secret_file,
        "env": env,
    }
    if factory is not MISSING:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata, repr=secret_file is None)


@dataclass(frozen=True)
class RuntimeConfig:
    workers: int = setting(2, help="Inference threads (per process).", low=1, high=64)
    intra_op_threads: int = setting(
        1, help="onnxruntime threads per inference.", option="--threads", low=1, high=64
    )
    # Threads for a request that runs alone (nothing else running or waiting) or on the
    # express lane: such a request spreads networks of WIDE_MIN_BYTES or more over every
    # core, a busy server runs one core per request. Same answers either way (onnxruntime
    # splits work, not sums, across threads; checked bit for bit in tests).
    lone_threads: int = setting(
        factory=lambda: min(os.cpu_count() or 1, 4),
        help="onnxruntime threads for a request that runs alone (nothing else running or "
        f"waiting) or on the express lane, for networks of {WIDE_MIN_BYTES // MIB} MB or "
        "more; default: the CPU count, at most 4.",
        low=1,
        high=64,
    )
    # Images this small (pixels: a 416×416 frame, a face crop) also have an express worker
    # of their own (see scheduler).
    express_pixels: int = 200_000
    max_pixels: int = setting(
        DEFAULT_MAX_PIXELS,
        help="Image size limit, checked before decoding.",
        option="--max-megapixels",
        scale=1_000_000,
        low=0.1,
        high=1000,
    )
    # How long a multi-threaded session's helpers wait awake for the next operator before
    # sleeping. Sleeping at once left a lone request after a pause no faster on two threads
    # than on one (an idle core woken for each operator); an unbounded spin burned 50 ms of
    # the other core after every run. `bench/benchmark.py --compare spin=0 spin=1000
    # --pause 0.3` measures it.
    spin_microseconds: int = 1000
    # Where the models run (mlapi.devices): onnxruntime's providers and their options are
    # made from these four settings, in one place (mlapi.onnx_sessions).
    device: str = setting(
        "cpu",
        help="Where the models run: cpu, auto (the first of CUDA, OpenVINO's GPU, its NPU, "
        "the CPU), openvino[:CPU|GPU|NPU|AUTO] or cuda[:N]; then DETECTOR=DEVICE for one "
        "detector, comma-separated (e.g. auto,faces=cpu). A model that cannot load or run "
        "there runs on the CPU, with one warning.",
        parse="devices",
        metavar="DEVICES",
    )
    openvino_cache: Path | None = setting(
        None,
        help="Folder for OpenVINO's compiled models, so a restart skips compiling them; "
        "default: openvino/ in the model cache folder.",
        parse="folder",
    )
    openvino_options: str = setting(
        "",
        help="More OpenVINO provider options, KEY=VALUE comma-separated (e.g. precision=FP16 "
        "on a GPU).",
        parse="provider_options",
        metavar="OPTIONS",
    )
    cuda_options: str = setting(
        "",
        help="More CUDA provider options, KEY=VALUE comma-separated (e.g. "
        "gpu_mem_limit=2147483648).",
        parse="provider_options",
        metavar="OPTIONS",
    )

    def device_for(self, detector: str | None) -> str:
        """The device a detector's models run on (`auto` and plain `openvino` unresolved)."""
        from mlapi.devices import split

        default, per = split(self.device)
        return per.get(detector or "", default)


DEFAULT_MODELS = ("objects", "faces", "genderage", "emotion", "faceprint", "embeddings")


@dataclass(frozen=True)
class ServerConfig:
    models: tuple[str, ...] = setting(
        DEFAULT_MODELS,
        help="Detectors loaded and warmed at start, comma-separated.",
        parse="models",
    )
    max_body: int = setting(
        20 * MIB, help="Request body limit (413).", option="--max-body-mb", scale=MIB,
        low=0.1, high=1024,
    )  # fmt: skip
    max_queue: int = setting(
        16,
        help="Requests admitted beyond the busy workers (reading their body or queued for a "
        "worker).",
        low=0,
        high=10_000,
    )
    max_waiting: int = setting(
        256,
        help="Requests that may wait, headers only, for admission, oldest first; more get 503.",
        low=0,
        high=100_000,
    )
    max_wait: float = setting(
        60.0, help="Seconds a request may wait for admission before 503.", low=0, high=3600
    )
    max_parts: int = 32  # multipart parts per request
    max_field: int = 64 * 1024  # bytes of a form field (not a file)
    # Forms whose key comes after their image (Double Take) are read whole before the key
    # is known: at most this many at once, each within max_body; more wait up to 5 s, then 503.
    max_keyless_bodies: int = 4
    read_timeout: float = 30.0
    allow_anonymous: bool = setting(
        False, help="Serve detection without credentials (trusted networks only)."
    )
    allow_url_fetch: bool = setting(
        False, help="Let clients send a public image URL instead of a file."
    )
    url_networks: Networks = setting(
        (),
        help="Private networks --allow-url-fetch may reach, comma-separated (your ZoneMinder "
        "host, for pyzm's URL mode); everything else private stays refused.",
        option="--allow-url-networks",
        parse="networks",
        metavar="CIDRS",
    )
    keyless_networks: Networks = setting(
        (),
        help="Networks whose clients may call --keyless-dialects without a key, "
        "comma-separated (e.g. a CodeProject.AI client or Frigate on the LAN).",
        parse="networks",
        metavar="CIDRS",
    )
    keyless_dialects: tuple[str, ...] = setting(
        ("deepstack",),
        help="Dialects --keyless-networks may call without a key (deepstack, compreface, "
        "doods, homegallery, mlapi, native, zoneminder, or an installed one's name).",
        parse="dialects",
        metavar="NAMES",
    )
    public_metrics: bool = setting(
        False,
        help="Serve GET /metrics without credentials (for a Prometheus on a trusted network).",
    )
    uploads: Path | None = setting(
        None,
        help="Keep images sent to /api/v1/detect/object here (unless delete=true); default: "
        "keep nothing.",
        parse="folder",
    )
    token_lifetime: int = setting(
        3600, help="Seconds an access token stays valid.", low=60, high=30 * 86400
    )
    # Proxies (HAProxy, nginx) whose X-Forwarded-For / Forwarded headers are believed; from
    # anywhere else the connection's own address is the client's.
    trusted_proxies: Networks = setting(
        (),
        help="Reverse proxies whose X-Forwarded-For or Forwarded header names the client, "
        "comma-separated (e.g. 127.0.0.1/32); from any other address those headers are "
        "ignored.",
        parse="networks",
        metavar="CIDRS",
    )
    # The address clients reach this server at (https://vision.lan), for the console's
    # snippets and the keyless same-origin check; else the listening address.
    public_url: str = setting(
        "",
        help="The address clients reach this server at (e.g. https://vision.lan), for the "
        "console's client snippets and its same-origin checks; default: the listening "
        "address.",
        parse="public_url",
        metavar="URL",
    )
    # Each dialect's own settings (the dataclass it registers in the mlapi.dialect_settings
    # entry-point group), by dialect name; a dialect missing here runs with its defaults.
    dialects: dict[str, Any] = field(default_factory=dict)

    def of(self, dialect: str, kind: type[T]) -> T:
        """The settings of `dialect`, of its declared `kind` (its defaults if none given)."""
        found = self.dialects.get(dialect)
        return found if isinstance(found, kind) else kind()


@dataclass(frozen=True)
class StoreSettings:
    """Bounds on what the stores keep and how long they wait (serve's options, or the
    environment for the other commands)."""

    db_timeout: float = setting(
        2.0,
        help="Seconds a database statement (or connecting) may take before the request gets "
        "503, or a key or password stamp read in the last 60 s is used.",
        low=0.1,
        high=60,
    )
    max_keys_per_user: int = setting(
        50, help="API keys one user may hold; creating another is refused.", low=1, high=100_000
    )
    max_sessions_per_user: int = setting(
        10,
        help="Console sessions one user may hold; a new sign-in closes the oldest.",
        low=1,
        high=10_000,
    )

    @classmethod
    def from_env(cls) -> StoreSettings:
        return from_environment(cls)


def from_environment(cls: type[T]) -> T:
    """Settings of `cls` from their environment variables (the commands other than serve,
    which read them as its options do): one unset or unreadable keeps its default; a flag is
    on for 1, true, yes or on."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        raw = os.environ.get(env_name(f), "").strip()
        default = getattr(cls, f.name)  # each such setting is a flag or a number with a default
        if not raw:
            continue
        if isinstance(default, bool):
            values[f.name] = raw.lower() in {"1", "true", "yes", "on"}
            continue
        with contextlib.suppress(ValueError):
            values[f.name] = type(default)(float(raw))
    return cls(**values)


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
