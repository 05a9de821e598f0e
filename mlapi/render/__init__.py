"""What the CLI prints: pure `Result → document` functions (`--format`). A dialect's own
answers live in its folder (mlapi/dialects/NAME/render.py).

Nothing here imports a web server, a token library or a database: `mlapi detect` renders
with these and the server's dialects answer with the same functions. FORMATS is the one
list of answer shapes the CLI's --format and the native route's `format` take.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlapi.render import mlapi_seed
from mlapi.result import Result, result_to_dict

Renderer = Callable[[Result], Any]

FORMATS: dict[str, Renderer] = {
    "native": result_to_dict,
    "mlapi": mlapi_seed.render,
}
FORMAT_NAMES = tuple(FORMATS)
