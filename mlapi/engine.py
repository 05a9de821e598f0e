"""The engine: resolves detector names, orders them by `needs`, validates options, loads
lazily under a lock and runs inference in a bounded thread pool.

The CLI, the server and the tests each build their own `Engine`; there are no globals.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from mlapi import images
from mlapi.config import DEFAULT_MAX_PIXELS, WIDE_MIN_BYTES, RuntimeConfig
from mlapi.detectors.base import Detector, Options
from mlapi.devices import ProviderSettings, concrete, provider_options
from mlapi.errors import GalleryError, MlapiError, UnknownDetector
from mlapi.images import Image
from mlapi.onnx_sessions import make_session, on_device
from mlapi.result import Detection, Result
from mlapi.scheduler import ShortestFirst, may_use_every_core
from mlapi.sightings.settings import FaceMemory
from mlapi.store import ModelCache
from mlapi.stores import Faces, Plates

LARGE_IMAGE_BYTES = 24 * 1024 * 1024  # after images this big, give freed memory back
T = TypeVar("T")
# The known faces, or what opens them on first use (see Runtime.gallery).
GalleryProvider = Faces | Callable[[], Faces] | None
# The known plates, or what opens them on first use (see Runtime.plates).
PlatesProvider = Plates | Callable[[], Plates] | None
DEFAULT_MODELS = ("objects",)


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def release_memory() -> None:
    """Return freed heap to the system (glibc keeps it otherwise, and RSS never falls)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def map_large_buffers() -> None:
    """Have glibc map every buffer over 1 MiB on its own, so freeing an image's pixels
    returns them to the system (its default threshold drifts up to 32 MiB and keeps them)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_MMAP_THRESHOLD, 1 << 20)


def merge_refinements(
    base: list[Detection], refined: list[list[Detection]], model: str
) -> list[Detection]:
    """One detection per base detection with every refiner's attributes and embedding."""
    out = []
    for i, detection in enumerate(base):
        attributes: dict[str, Any] = dict(detection.attributes)
        embedding, memo = detection.embedding, detection.memo
        for found in refined:
            if len(found) != len(base):
                raise MlapiError(f"a detector refining {model!r} returned a different count")
            attributes.update(found[i].attributes)
            embedding = found[i].embedding or embedding
            memo = found[i].memo if found[i].memo is not None else memo
        out.append(
            replace(detection, attributes=attributes, embedding=embedding, model=model, memo=memo)
        )
    return out


def helper_thread(name: str) -> ThreadPoolExecutor:
    """One worker thread, started now so it has the caller's CPU priority: threads inherit
    their creator's, and the pool's regular workers run niced (see scheduler)."""
    executor = ThreadPoolExecutor(1, thread_name_prefix=name)
    executor.submit(int).result()
    return executor


class Pixels:
    """One image at each resolution a request's detectors need, decoded once per resolution.

    A JPEG decodes at a reduced scale (1/2, 1/4, 1/8) when a detector needs fewer pixels;
    each detector gets exactly the pixels it would get if it ran alone, so `faces` scores a
    face the same whether or not `genderage` runs too. Arrays (video frames) are used as
    they are by every detector.
    """

    def __init__(self, data: bytes | None, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self._data, self._max_pixels = data, max_pixels
        self._decoded: dict[int | None, Image] = {}
        self._pending: dict[int | None, Future[Image]] = {}

    @classmethod
    def of(cls, image: Image) -> Pixels:
        pixels = cls(None)
        pixels._decoded[None] = image
        return pixels

    def at(self, side: int | None) -> Image:
        if self._data is None:
            return self._decoded[None]
        first = next(iter(self._decoded.values()), None)
        if first is not None and first.format != "jpeg":
            return first  # only JPEG decodes smaller: one decode serves every side
        if side not in self._decoded:
            pending = self._pending.pop(side, None)
            self._decoded[side] = pending.result() if pending else self._decode(side)
        return self._decoded[side]

    def _decode(self, side: int | None) -> Image:
        assert self._data is not None
        return images.decode(self._data, max_pixels=self._max_pixels, min_side=side)

    def prefetch(self, sides: Iterable[int | None], decoder: ThreadPoolExecutor) -> None:
        """Start decoding these resolutions of a JPEG on `decoder`, so they are ready when
        their detectors ask (the same pixels `at` would decode itself; Pillow releases the
        GIL while it decodes, so this uses another core)."""
        if self._data is None or images.sniff(self._data) != "jpeg":
            return
        if images.decode_memory(self._data) > images.PARALLEL_PROGRESSIVE:
            return  # a big progressive JPEG: one coefficient buffer at a time
        for side in sides:
            if side not in self._decoded and side not in self._pending:
                self._pending[side] = decoder.submit(self._decode, side)

    @property
    def nbytes(self) -> int:
        return sum(i.pixels.nbytes for i in self._decoded.values())


class Timings:
    """Runs and seconds per detector, for /metrics."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.runs: dict[str, int] = {}
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        with self._lock:
            self.runs[name] = self.runs.get(name, 0) + 1
            self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def snapshot(self) -> dict[str, tuple[int, float]]:
        with self._lock:
            return {n: (self.runs[n], self.seconds[n]) for n in self.runs}


@dataclass(frozen=True)
class Plan:
    """A validated request: the detections to return (`requested`), every detector to run
    in dependency order, and each one's parsed options."""

    requested: tuple[str, ...]
    order: tuple[str, ...]
    options: Mapping[str, Options]


class Runtime:
    """What detectors load from: the model store and one onnxruntime session per model."""

    def __init__(
        self,
        store: ModelCache,
        config: RuntimeConfig,
        gallery: GalleryProvider = None,
        plates: PlatesProvider = None,
    ) -> None:
        self.store = store
        self.config = config
        self._gallery = gallery
        self._plates = plates
        # Whether `recognize` keeps a picture and a quality score of each face it sees, for
        # the memory of faces seen (mlapi.sightings): the server and `mlapi stream` set it.
        self.remember_faces = False
        # The quality gate of those faces and of new samples (the server's settings, else
        # the environment's).
        self.face_gate = FaceMemory.from_env()
        # Decodes a request's other resolutions and makes wide sessions (whose onnxruntime
        # threads then have this priority, not a niced worker's).
        self.helper = helper_thread("mlapi-helper")
        self._sessions: dict[tuple[str, str], ModelSessions] = {}
        # Each detector's sessions by model file: what devices() reports.
        self._used: dict[str, dict[str, ModelSessions]] = {}
        self._lock = threading.Lock()

    @property
    def gallery(self) -> Faces:
        """The known faces, as whoever made the engine gave them: the server its stores',
        the CLI a function that opens them on first use (so detecting objects touches no
        stored state). The engine itself never opens a store."""
        if self._gallery is None:
            raise GalleryError("this engine was given no gallery of known faces")
        if callable(self._gallery):
            self._gallery = self._gallery()
        return self._gallery

    @gallery.setter
    def gallery(self, faces: Faces) -> None:
        self._gallery = faces

    @property
    def plates(self) -> Plates | None:
        """The known plates `plates` names the plates it reads from, given as the gallery
        is (see above); None: this engine names no plate."""
        if callable(self._plates):
            self._plates = self._plates()
        return self._plates

    @plates.setter
    def plates(self, plates: Plates) -> None:
        self._plates = plates

    def model_path(self, name: str) -> Path:
        return self.store.model_dir(name)

    def onnx_session(self, name: str, path: Path | None = None, detector: str | None = None) -> Any:
        """One shared session per model file and device (`path`: another file of the model
        than its main artifact; `detector`: whose device, see RuntimeConfig.device)."""
        device = concrete(self.config.device_for(detector))
        key = f"{name}:{path.name}" if path else name
        with self._lock:
            if (key, device) not in self._sessions:
                model = path or self.store.artifact(name)
                self._sessions[key, device] = ModelSessions(
                    model, self.config, self.helper, device, key, self.provider_settings()
                )
            sessions = self._sessions[key, device]
            if detector is not None and key not in self._used.setdefault(detector, {}):
                self._used[detector][key] = sessions
                logging.getLogger("mlapi").info(
                    "%s: model %s runs on %s", detector, key, sessions.describe()
                )
            return sessions

    def provider_settings(self) -> ProviderSettings:
        """The providers' options, from the settings (OpenVINO's compiled models kept in
        the model cache folder unless --openvino-cache says elsewhere)."""
        config = self.config
        return ProviderSettings(
            openvino_cache=config.openvino_cache or self.store.root / "openvino",
            openvino_options=provider_options(config.openvino_options),
            cuda_options=provider_options(config.cuda_options),
        )

    def for_detector(self, detector: str) -> DetectorContext:
        """What detector `detector` loads from: this runtime, its sessions on its device."""
        return DetectorContext(self, detector)

    def devices(self) -> dict[str, str]:
        """The device each loaded detector's models run on, as they run now (after any
        fall back to the CPU); `cpu+openvino:CPU` when its models differ. A detector that
        runs no onnxruntime model (OpenCV's, which run on the CPU) is not listed."""
        with self._lock:
            used = {name: list(models.values()) for name, models in self._used.items()}
        return {
            name: "+".join(sorted({s.device for s in sessions})) or "cpu"
            for name, sessions in sorted(used.items())
        }


class DetectorContext:
    """A detector's view of the runtime: its sessions are made on its own device."""

    def __init__(self, runtime: Runtime, detector: str) -> None:
        self._runtime, self.detector = runtime, detector

    def onnx_session(self, name: str, path: Path | None = None) -> Any:
        return self._runtime.onnx_session(name, path, self.detector)

    def model_path(self, name: str) -> Path:
        return self._runtime.model_path(name)

    @property
    def gallery(self) -> Faces:
        return self._runtime.gallery

    @property
    def plates(self) -> Plates | None:
        return self._runtime.plates

    @property
    def remember_faces(self) -> bool:
        return self._runtime.remember_faces

    def __getattr__(self, name: str) -> Any:  # store, config…
        return getattr(self._runtime, name)


class ModelSessions:
    """A model's onnxruntime session, used like one: `run` takes the wide session (made on
    first use) when the request runs alone in the pool and the network is big enough to
    gain from more threads, else the narrow one.

    On a device other than the CPU, a session that cannot be made or cannot run there is
    made again on the CPU, with one warning naming the model and the reason (`fallback`
    keeps both); the model then stays on the CPU."""

    def __init__(
        self,
        model: Path,
        config: RuntimeConfig,
        maker: ThreadPoolExecutor,
        device: str = "cpu",
        name: str = "",
        settings: ProviderSettings | None = None,
    ) -> None:
        self.model, self.config, self._maker = model, config, maker
        self.wanted = self.device = device
        self.name = name or model.parent.name
        self.settings = settings or ProviderSettings()
        self.fallback: str | None = None  # why the model left its device for the CPU
        self._lock = threading.Lock()
        self.narrow = self._make(config.intra_op_threads)
        self.widens = (
            config.lone_threads > config.intra_op_threads and model.stat().st_size >= WIDE_MIN_BYTES
        )
        self._wide: Any = None

    def describe(self) -> str:
        """`openvino:CPU`, or `cpu (not openvino:GPU: REASON)` after a fall back."""
        if self.fallback is None:
            return self.device
        return f"{self.device} (not {self.wanted}: {self.fallback})"

    def _pick(self) -> Any:
        if not self.widens or not may_use_every_core():
            return self.narrow
        with self._lock:
            if self._wide is None:
                self._wide = self._maker.submit(self._make, self.config.lone_threads).result()
            return self._wide

    def _make(self, threads: int) -> Any:
        spin = self.config.spin_microseconds
        if self.device != "cpu":
            # The narrow session serves every worker at once (OpenVINO: a stream each), the
            # wide one a request alone.
            streams = self.config.workers if threads == self.config.intra_op_threads else 1
            try:
                return on_device(self.model, threads, spin, self.device, self.settings, streams)
            except Exception as exc:  # onnxruntime's own types, and DeviceUnavailable
                self._fall_back("load", exc)
        return make_session(self.model, threads, spin)

    def _fall_back(self, step: str, reason: BaseException) -> None:
        """From now on, the CPU (said once: later calls find the device is the CPU)."""
        if self.device == "cpu":
            return
        said = str(reason).strip().splitlines()
        # onnxruntime's messages start with its source file and the C++ function's signature
        first = re.sub(r"^\S+\.(?:cc|cpp|h):\d+ [^(]*\([^)]*\)\s*", "", said[0]) if said else ""
        first = re.sub(r"^(?:\[ERROR\]\s*)", "", first)
        self.fallback = (first or type(reason).__name__)[:300]
        logging.getLogger("mlapi").warning(
            "model %s could not %s on %s, so it runs on the CPU: %s",
            self.name, step, self.device, self.fallback,
        )  # fmt: skip
        self.device = "cpu"

    def run(self, outputs: Any, feeds: Mapping[str, Any]) -> Any:
        session = self._pick()
        if self.device == "cpu":
            return session.run(outputs, feeds)
        try:
            return session.run(outputs, feeds)
        except Exception as exc:
            with self._lock:
                if self.device != "cpu":
                    self._fall_back("run", exc)
                    self.narrow = self._make(self.config.intra_op_threads)
                    self._wide = None
            return self._pick().run(outputs, feeds)

    def __getattr__(self, name: str) -> Any:  # get_inputs, get_outputs…
        return getattr(self.narrow, name)


class Engine:
    def __init__(
        self,
        store: ModelCache | None = None,
        config: RuntimeConfig | None = None,
        registry: Mapping[str, type[Detector]] | None = None,
        gallery: GalleryProvider = None,
        plates: PlatesProvider = None,
    ) -> None:
        self.config = config or RuntimeConfig()
        self.runtime = Runtime(store or ModelCache(), self.config, gallery, plates)
        if registry is None:
            from mlapi.registry import installed

            registry = installed(self.runtime.store)
        self.registry = dict(registry)
        self._loaded: dict[str, Detector] = {}
        self._load_lock = threading.Lock()
        self._pool = ShortestFirst(self.config.workers, express_cost=self.config.express_pixels)
        self.timings = Timings()

    @property
    def store(self) -> ModelCache:
        return self.runtime.store

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.runtime.helper.shutdown(wait=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- planning ------------------------------------------------------------------------
    def plan(self, names: Iterable[str]) -> list[str]:
        """Requested detectors and what they need, dependencies first."""
        order: list[str] = []
        visiting: set[str] = set()

        def visit(name: str) -> None:
            if name in order:
                return
            if name not in self.registry:
                known = ", ".join(sorted(self.registry))
                raise UnknownDetector(f"unknown detector {name!r} (available: {known})")
            if name in visiting:
                raise MlapiError(f"detectors {name!r} and its needs form a cycle")
            visiting.add(name)
            for dep in self.registry[name].needs:
                visit(dep)
            visiting.discard(name)
            order.append(name)

        for name in names:
            visit(name)
        return order

    def parse_options(
        self, names: Sequence[str], raw: Mapping[str, Mapping[str, Any]] | None
    ) -> dict[str, Options]:
        raw = raw or {}
        stray = sorted(set(raw) - set(names))
        if stray:
            raise UnknownDetector(f"options given for {', '.join(stray)}, which is not being run")
        return {n: self.registry[n].Options.parse(raw.get(n), n) for n in names}

    # -- loading -------------------------------------------------------------------------
    def detector(self, name: str) -> Detector:
        loaded = self._loaded.get(name)
        if loaded is not None:
            return loaded
        with self._load_lock:
            if name not in self._loaded:
                cls = self.registry[name]
                for model in cls.models:  # a clear error before any expensive work
                    self.store.model_dir(model)
                instance = cls(self.runtime.for_detector(name))
                instance.load()
                self._loaded[name] = instance
            return self._loaded[name]

    def warm(self, names: Iterable[str]) -> None:
        for name in self.plan(names):
            self.detector(name)

    def check_models(self, names: Iterable[str]) -> None:
        """ModelMissing, naming the command to run, unless every model they need is pulled."""
        for name in self.plan(names):
            for model in self.registry[name].models:
                self.store.model_dir(model)

    # -- running -------------------------------------------------------------------------
    def make_plan(
        self, models: Sequence[str] | None, options: Mapping[str, Mapping[str, Any]] | None
    ) -> Plan:
        """Validate a request before any decoding (unknown detector or option: an error); the
        plan then serves any number of images."""
        requested = tuple(dict.fromkeys(models or DEFAULT_MODELS))
        order = tuple(self.plan(requested))
        return Plan(requested, order, self.parse_options(order, options))

    def decode(self, data: bytes, name: str, options: Options | None = None) -> Image:
        """The pixels detector `name` gets for `data` (what `run_here` gives it)."""
        side = self.registry[name].needed_side(options)
        return Pixels(data, self.config.max_pixels).at(side)

    def run_here(self, image: bytes | Image | Pixels, plan: Plan) -> Result:
        """Run a plan on one image in the calling thread (the pool's threads, the CLI's
        file workers and stream's reader call this; everyone else `detect`). Each detector
        gets the pixels it would get on its own (see Pixels), so its answer does not depend
        on which other detectors run with it."""
        if isinstance(image, bytes):
            pixels = Pixels(image, self.config.max_pixels)
            try:
                return self.run_here(pixels, plan)
            finally:
                if pixels.nbytes > LARGE_IMAGE_BYTES:
                    del pixels
                    release_memory()
        pixels = image if isinstance(image, Pixels) else Pixels.of(image)
        sides = [self.registry[n].needed_side(plan.options[n]) for n in plan.order]
        if len(set(sides)) > 1 and self.config.lone_threads > 1 and may_use_every_core():
            # the first is decoded here, now
            pixels.prefetch(dict.fromkeys(sides[1:]), self.runtime.helper)
        upstream: dict[str, list[Detection]] = {}
        stages: dict[str, float] = {}
        for name, side in zip(plan.order, sides, strict=True):
            started = time.perf_counter()
            own = pixels.at(side)
            upstream[name] = self.detector(name).detect(own, plan.options[name], upstream)
            stages[name] = time.perf_counter() - started
            self.timings.add(name, stages[name])
        first = pixels.at(None) if not plan.order else own
        found = tuple(self._collect(plan.requested, upstream))
        return Result(first.width, first.height, found, stages)

    def _collect(
        self, requested: Sequence[str], upstream: Mapping[str, list[Detection]]
    ) -> list[Detection]:
        """Requested detections in request order, refinements merged into their base.

        `-m genderage,emotion` gives one face each with both sets of attributes, named
        "genderage+emotion"; with `faces` also requested they stay named "faces".
        """
        refiners: dict[str, list[str]] = {}
        for name in requested:
            base = self.registry[name].refines
            if base:
                refiners.setdefault(base, []).append(name)
        found: list[Detection] = []
        merged: set[str] = set()
        for name in requested:
            base = self.registry[name].refines or name
            if base not in refiners:
                found += upstream[name]
                continue
            if base in merged:
                continue
            merged.add(base)
            label = base if base in requested else "+".join(refiners[base])
            found += merge_refinements(upstream[base], [upstream[r] for r in refiners[base]], label)
        return found

    def detect(
        self,
        data: bytes,
        models: Sequence[str] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Result:
        """Validate, then decode and detect on the bounded pool; blocks the calling thread."""
        plan = self.make_plan(models, options)
        job = self._pool.submit(self.run_here, data, plan, cost=images.pixel_cost(data))
        result: Result = job.result()
        return result

    async def detect_async(
        self,
        data: bytes,
        models: Sequence[str] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> Result:
        """`detect` for async code: awaits the pool instead of blocking."""
        plan = self.make_plan(models, options)
        return await self.run_async(self.run_here, data, plan, cost=images.pixel_cost(data))

    async def run_async(self, fn: Callable[..., T], *args: Any, cost: float = 0.0) -> T:
        """Run blocking work (inference, enrolment) on the bounded pool from async code."""
        return await asyncio.wrap_future(self._pool.submit(fn, *args, cost=cost))
