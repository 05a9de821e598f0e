"""The plugin interface: one class per detector, registered under `mlapi.detectors`."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from mlapi.errors import OptionError
from mlapi.images import Image
from mlapi.result import Detection

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_KIND_NAMES = {float: "a number", int: "a whole number", bool: "true or false"}


@dataclass(frozen=True)
class Options:
    """Base for a detector's options: typed fields with defaults, unknown keys refused.

    Bounds go in field metadata: `field(default=0.5, metadata={"min": 0, "max": 1})`.
    """

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, detector: str = "") -> Options:
        raw = dict(raw or {})
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - set(fields))
        prefix = f"{detector}: " if detector else ""
        if unknown:
            allowed = ", ".join(sorted(fields)) or "none"
            raise OptionError(f"{prefix}unknown option {', '.join(unknown)} (allowed: {allowed})")
        hints = typing.get_type_hints(cls)
        values = {}
        for name, value in raw.items():
            f = fields[name]
            values[name] = _coerce(f"{prefix}{name}", value, hints[name], f.metadata)
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def describe(cls) -> list[dict[str, Any]]:
        """Each option for a form: its name, kind, default and bounds or choices."""
        hints = typing.get_type_hints(cls)
        defaults = cls().as_dict()
        rows = []
        for f in dataclasses.fields(cls):
            kind, _ = _unwrap_optional(hints[f.name])
            default = defaults[f.name]
            row: dict[str, Any] = {
                "name": f.name,
                "type": _FORM_KINDS.get(kind, "text"),
                "default": ",".join(default) if isinstance(default, tuple) else default,
            }
            row.update({k: f.metadata[k] for k in ("min", "max") if k in f.metadata})
            if "choices" in f.metadata:
                row["choices"] = list(f.metadata["choices"])
            rows.append(row)
        return rows


_FORM_KINDS = {float: "number", int: "integer", bool: "boolean"}


def _unwrap_optional(kind: Any) -> tuple[Any, bool]:
    """(the type an option holds, whether it may be None): `float | None` → (float, True)."""
    if typing.get_origin(kind) in (types.UnionType, typing.Union):
        return next(a for a in typing.get_args(kind) if a is not type(None)), True
    return kind, False


def _coerce(name: str, value: Any, kind: Any, meta: Mapping[str, Any]) -> Any:
    kind, optional = _unwrap_optional(kind)
    if optional and (value is None or value == ""):
        return None
    origin = typing.get_origin(kind)
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(i).strip() for i in items if str(i).strip())
        if kind in (int, float):
            if isinstance(value, bool):
                raise ValueError
            number = kind(value) if kind is float else int(str(value), 10)
            if number != number:  # NaN
                raise ValueError
            lo, hi = meta.get("min"), meta.get("max")
            if (lo is not None and number < lo) or (hi is not None and number > hi):
                raise OptionError(f"{name} must be between {lo} and {hi}, got {value!r}")
            return number
        if kind is str:
            text = str(value)
            choices = meta.get("choices")
            if choices and text not in choices:
                raise OptionError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
            pattern = meta.get("pattern")  # e.g. a model name, never a path
            if pattern and not re.fullmatch(pattern, text):
                raise OptionError(f"{name} must be {meta.get('means', pattern)}, got {text[:64]!r}")
            return text
    except OptionError:
        raise
    except (TypeError, ValueError):
        kind_name = _KIND_NAMES.get(kind, getattr(kind, "__name__", str(kind)))
        raise OptionError(f"{name} must be {kind_name}, got {value!r}") from None
    raise OptionError(f"{name}: unsupported option type {kind}")


@dataclass(frozen=True)
class NoOptions(Options):
    pass


class LoadContext(typing.Protocol):
    """What a detector may use to load itself (see `mlapi.engine.Runtime`)."""

    def model_path(self, name: str) -> Any: ...

    def onnx_session(self, name: str, path: Any = None) -> Any: ...

    @property
    def gallery(self) -> Any: ...  # mlapi.stores.Faces: the known people

    @property
    def plates(self) -> Any: ...  # mlapi.stores.Plates, or None: the known plates

    @property
    def remember_faces(self) -> bool: ...  # recognize keeps each face's picture (sightings)


class Detector(ABC):
    """A named detector. Subclasses set the class attributes and implement `detect`.

    `load()` runs once, lazily, under the engine's lock; `detect()` may then run from
    several threads at once, so it must not mutate shared state.
    """

    name: ClassVar[str]
    task: ClassVar[str]  # "objects", "faces", "attributes", "embedding", …
    description: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()  # detectors whose results `detect` receives
    # A detector that adds attributes to another's detections ("faces") returns exactly one
    # detection per upstream detection, in order; the engine merges them into one result.
    refines: ClassVar[str | None] = None
    models: ClassVar[tuple[str, ...]] = ()  # catalog entries the detector loads
    min_side: ClassVar[int | None] = None  # long side it needs; None means full resolution
    Options: ClassVar[type[Options]] = NoOptions

    def __init__(self, context: LoadContext) -> None:
        self.context = context

    @classmethod
    def needed_side(cls, options: Any = None) -> int | None:
        """The long side this detector needs with these options (None: full resolution)."""
        return cls.min_side

    def load(self) -> None:  # noqa: B027 - optional hook
        """Expensive set-up (sessions, weights)."""

    def open_session(self, model: str | None = None) -> tuple[Any, str]:
        """The shared onnxruntime session of `model` (default: the first of `models`) and
        the name of its input."""
        session = self.context.onnx_session(model or self.models[0])
        return session, session.get_inputs()[0].name

    @abstractmethod
    def detect(
        self, image: Image, options: Any, upstream: Mapping[str, list[Detection]]
    ) -> list[Detection]:
        """Detections in original upright pixels, best first."""


class StagedDetector(Detector):
    """A single-model detector split into stages the benchmark can time one by one."""

    @abstractmethod
    def preprocess(self, image: Image, options: Any) -> tuple[Any, float]:
        """(model input, factor from model-input pixels back to `image.pixels` pixels)."""

    @abstractmethod
    def infer(self, tensor: Any) -> Any: ...

    @abstractmethod
    def postprocess(
        self, raw: Any, factor: float, image: Image, options: Any
    ) -> list[Detection]: ...

    def detect(
        self, image: Image, options: Any, upstream: Mapping[str, list[Detection]]
    ) -> list[Detection]:
        tensor, factor = self.preprocess(image, options)
        return self.postprocess(self.infer(tensor), factor, image, options)
