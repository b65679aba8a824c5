"""Small checks shared by the config dataclasses (a leaf module: imports only fv2es.errors).

Each raises a :class:`~fv2es.errors.ConfigError` naming ``section.key``, where the section is
the dataclass's name without ``Config`` (``ModelConfig`` -> ``model``).
"""

from __future__ import annotations

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
