"""`mlapi serve`'s options, made from the settings dataclasses' field metadata (see
mlapi.config.setting): each setting is declared once, with its default, bounds, help and
environment variable, and becomes an option here and a value there."""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Callable, Iterable, Mapping
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import click

from mlapi.cli.common import (
    parse_device_setting,
    parse_dialects,
    parse_models,
    parse_networks,
    parse_provider_options,
    parse_public_url,
)
from mlapi.config import env_name, option_name

DIALECT_SETTINGS = "mlapi.dialect_settings"  # entry points: dialect name → its settings class
PARSERS: dict[str, Callable[[str], Any]] = {
    "models": lambda text: tuple(parse_models((text,))),
    "networks": parse_networks,
    "dialects": parse_dialects,
    "public_url": parse_public_url,
    "devices": parse_device_setting,
    "provider_options": parse_provider_options,
}


def dialect_settings() -> dict[str, type]:
    """Each installed dialect's settings class, by dialect name (light modules only)."""
    return {ep.name: ep.load() for ep in sorted(entry_points(group=DIALECT_SETTINGS), key=str)}


def offered(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if "help" in f.metadata]


def _param(prefix: str, f: dataclasses.Field[Any]) -> str:
    return f"{prefix}{f.name}"


def _default(cls: type, f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        value = f.default
    else:
        return None  # made when the value is built (e.g. from the CPU count)
    scale = f.metadata["scale"]
    if scale:
        value = value / scale
        return int(value) if float(value).is_integer() else value
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return value


def _option(cls: type, f: dataclasses.Field[Any], prefix: str) -> Callable[[Any], Any]:
    meta = f.metadata
    kind = typing.get_type_hints(cls)[f.name]
    help_text = str(meta["help"])
    if meta["secret_file"]:
        return click.option(
            meta["secret_file"],
            _param(prefix, f),
            type=click.Path(dir_okay=False, exists=True, path_type=Path),
            help=help_text,
        )
    name = option_name(f)
    env = env_name(f)
    kwargs: dict[str, Any] = {"envvar": env, "help": f"{help_text} [env: {env}]"}
    if kind is bool:
        return click.option(name, _param(prefix, f), is_flag=True, **kwargs)
    if meta["parse"] in PARSERS:
        parser = PARSERS[meta["parse"]]
        kwargs["callback"] = lambda ctx, param, value: parser(value) if value else None
    elif meta["parse"] == "folder":
        kwargs["type"] = click.Path(file_okay=False, path_type=Path)
    elif kind in (int, float) and not meta["scale"]:
        bounds = click.IntRange if kind is int else click.FloatRange
        kwargs["type"] = bounds(meta["low"], meta["high"])
    elif meta["scale"]:
        kwargs["type"] = click.FloatRange(meta["low"], meta["high"])
    default = _default(cls, f)
    if default not in (None, "", ()):
        kwargs.update(default=default, show_default=True)
    if meta["metavar"]:
        kwargs["metavar"] = meta["metavar"]
    return click.option(name, _param(prefix, f), **kwargs)


def options(classes: Iterable[tuple[type, str]]) -> Callable[[Callable[..., Any]], Any]:
    """Decorate a command with an option for each offered field of each (class, prefix)."""

    def decorate(command: Callable[..., Any]) -> Any:
        for cls, prefix in reversed(list(classes)):
            for f in reversed(offered(cls)):
                command = _option(cls, f, prefix)(command)
        return command

    return decorate


def build(cls: type[Any], values: Mapping[str, Any], prefix: str = "", **fixed: Any) -> Any:
    """`cls` from the command's values (`fixed`: values given otherwise); a setting left
    unset keeps its dataclass default."""
    kwargs: dict[str, Any] = {}
    for f in offered(cls):
        value = values.get(_param(prefix, f))
        if f.metadata["secret_file"]:
            value = value.read_text().strip() if value else os.environ.get(env_name(f), "")
        if value is None:
            continue
        if f.metadata["scale"]:
            value = int(value * f.metadata["scale"])
        kwargs[f.name] = value
    return cls(**{**kwargs, **fixed})


def markdown(classes: Iterable[tuple[type, str]]) -> str:
    """The settings as docs/settings.md lists them: option, variable, default, meaning."""
    rows = ["| option | environment | default | meaning |", "|---|---|---|---|"]
    for cls, _ in classes:
        for f in offered(cls):
            meta = f.metadata
            if meta["secret_file"]:
                name, env = meta["secret_file"], env_name(f)
            else:
                name, env = option_name(f), env_name(f)
            default = _default(cls, f)
            empty = default in (None, "", ())
            shown = "off" if default is False else ("none" if empty else default)
            meaning = str(meta["help"]).replace("|", "\\|")
            rows.append(f"| `{name}` | `{env}` | {shown} | {meaning} |")
    return "\n".join(rows) + "\n"
