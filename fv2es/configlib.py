"""Helpers shared by the config dataclasses (a leaf module: imports only fv2es.errors).

:func:`from_dict` / :func:`to_dict` turn any config dataclass to and from plain data, so both
:mod:`fv2es.config` and the sections below it (``fv2es.models``) can use them.

Each raises a :class:`~fv2es.errors.ConfigError` naming ``section.key``, where the section is
the dataclass's name without ``Config`` (``ModelConfig`` -> ``model``).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Mapping
from typing import Any

from fv2es.errors import ConfigError


def choice(*allowed: str) -> dict:
    """Field metadata restricting a string option to ``allowed`` (checked when a config is loaded)."""
    return {"choices": allowed}


def section_name(obj) -> str:
    """The config section a dataclass instance stands for: ``TrainConfig`` -> ``train``."""
    return type(obj).__name__.removesuffix("Config").lower()


def positive(obj, *names: str) -> None:
    """Refuse any of the fields ``names`` of ``obj`` that is not > 0."""
    section = section_name(obj)
    for name in names:
        if getattr(obj, name) <= 0:
            raise ConfigError(f"{section}.{name} must be > 0, got {getattr(obj, name)!r}")


def unit_interval(obj, *names: str) -> None:
    """Refuse any of the fields ``names`` of ``obj`` outside [0, 1)."""
    section = section_name(obj)
    for name in names:
        if not 0.0 <= getattr(obj, name) < 1.0:
            raise ConfigError(f"{section}.{name} must be in [0, 1), got {getattr(obj, name)!r}")


def to_dict(obj) -> dict[str, Any]:
    """A plain (YAML/JSON-able) dict of a config dataclass; tuples become lists."""
    out = {}
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif hints[f.name] is float and isinstance(value, int):
            value = float(value)  # a default written as 4 * 3600 must hash like the loaded 14400.0
        out[f.name] = value
    return out


def from_dict(cls, data: Mapping[str, Any], where: str = "", base=None):
    """Build dataclass ``cls`` from ``data``, starting from ``base`` (or the defaults).

    Nested dataclass fields are merged key by key, so a YAML file names only what it changes.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        near = difflib.get_close_matches(str(key), list(fields), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"unknown config key {_join(where, key)!r}{hint}; known: {', '.join(fields)}")
    base = base if base is not None else cls()
    values = {}
    for name, value in data.items():
        tp = hints[name]
        path = _join(where, name)
        if dataclasses.is_dataclass(tp):
            values[name] = from_dict(tp, value or {}, path, getattr(base, name))
        else:
            values[name] = _coerce(value, tp, path, fields[name].metadata.get("choices"))
    try:
        return dataclasses.replace(base, **values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def _coerce(value: Any, tp: Any, where: str, choices: tuple[str, ...] | None) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists to tuples."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, choices)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{where}[{i}]", None) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _looks_like_float(value):
            return float(value)  # YAML 1.1 reads "4.5e-6" (no dot) as a string; users mean a number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        if choices and value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(choices)}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp!r}")


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else str(key)


def _looks_like_float(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return raw.strip().lower() not in ("nan", "inf", "-inf", "infinity")
