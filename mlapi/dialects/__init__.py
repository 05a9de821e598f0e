"""The dialects `mlapi serve` speaks, by name (as `--keyless-dialects` takes them).

Each is a module with a `DIALECT` (see mlapi.dialect). Adding one is that module and one
line here; nothing else changes. Modules are imported only when the server is made.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlapi.dialect import Dialect

MODULES = {
    "native": "mlapi.dialects.native",
    "mlapi": "mlapi.dialects.mlapi_seed",
    "homegallery": "mlapi.dialects.homegallery",
    "deepstack": "mlapi.dialects.deepstack",
    "compreface": "mlapi.dialects.compreface",
    "zoneminder": "mlapi.dialects.zoneminder",
    "doods": "mlapi.dialects.doods",
    "console": "mlapi.dialects.console",
}
NAMES = tuple(MODULES)
KEYLESS = tuple(n for n in NAMES if n != "console")  # the console always needs a sign-in


def load() -> list[Dialect]:
    dialects = [importlib.import_module(module).DIALECT for module in MODULES.values()]
    for name, dialect in zip(MODULES, dialects, strict=True):
        assert dialect.name == name, f"{MODULES[name]} declares dialect {dialect.name!r}"
    return dialects
