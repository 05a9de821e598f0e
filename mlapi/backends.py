"""What `mlapi detect` and `mlapi stream` detect with: an image (file bytes or a video
frame) → Result, on this machine or on a server. Rendering happens at the output, so both
commands print the same bytes whichever backend answered (see result.canonical)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from mlapi.images import Image, encode_jpeg
from mlapi.result import Result, result_from_dict

if TYPE_CHECKING:
    from mlapi.engine import Engine

Options = dict[str, dict[str, Any]]


class Backend(Protocol):
    def warm(self) -> None:
        """Load what detection needs now: a missing model is one error before any file."""

    def __call__(self, image: bytes | Image) -> Result: ...


class Local:
    def __init__(self, engine: Engine, models: list[str], options: Options) -> None:
        self.engine = engine
        self.plan = engine.make_plan(models, options)  # validated once for every image

    def warm(self) -> None:
        self.engine.warm(self.plan.order)

    def __call__(self, image: bytes | Image) -> Result:
        # Already on one of the caller's worker threads: detect here, not on the engine's pool.
        return self.engine.run_here(image, self.plan)


class Remote:
    """A server's native answer, parsed back into a Result."""

    def __init__(self, url: str, models: list[str], options: Options, source: str = "") -> None:
        from mlapi.client import Remote as Client

        self.client = Client(url, models, options, "native", source)

    def warm(self) -> None:
        pass  # the server loads its own models

    def __call__(self, image: bytes | Image) -> Result:
        data = image if isinstance(image, bytes) else encode_jpeg(image.pixels, 90)
        return result_from_dict(json.loads(self.client(data)))


def backend(
    server: str | None,
    engine: Engine | None,
    models: list[str],
    options: Options,
    source: str = "",
) -> Backend:
    """`--server URL`'s backend (`source`: the camera it names to the server), else the
    local engine's."""
    if server:
        return Remote(server, models, options, source)
    assert engine is not None
    return Local(engine, models, options)
