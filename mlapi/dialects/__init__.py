"""Renderers: one per wire contract. The CLI's --format and the server use the same ones."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mlapi.dialects import mlapi_seed
from mlapi.result import Result, result_to_dict

Renderer = Callable[[Result], Any]

FORMATS: dict[str, Renderer] = {
    "native": result_to_dict,
    "mlapi": mlapi_seed.render,
}
