"""Named models: presets (whole configurations) and branch architectures, by name only.

This module imports no model (as timm keeps ``_registry.py`` apart from ``_factory.py``): it
records names and looks them up; :func:`fv2es.models.factory.create_model` builds. As in timm's
``register_model``, the entry point sits beside what it names:

- a **preset** is a function returning a :class:`ModelConfig`, registered with
  :func:`register_model` (``model.preset`` in a config starts from it; the shipped ones live in
  :mod:`fv2es.models.presets`);
- a **branch architecture** is a builder registered with :func:`register_branch` in the module
  that defines the branch (``@register_branch("audio", "nest")`` in :mod:`fv2es.models.audio`);
  ``model.audio_arch`` / ``visual_arch`` / ``text_arch`` name it.

A new branch is therefore one module (listed in :data:`BRANCH_MODULES`, imported on first lookup
so that importing the config needs no torch) plus a YAML that selects it. Builders take the
:class:`ModelConfig` and keyword arguments that depend on the kind:

- ``visual``: ``out_dim`` -> a module mapping normalised faces (N, 3, S, S) to (N, out_dim);
  it may offer ``reparameterize()`` / ``reparameterized`` (folding for inference);
- ``audio``: ``out_dim`` -> a module mapping pieces (P, *piece_shape) to (P, out_dim);
- ``text``: ``pretrained``, ``hf_config`` -> a module with ``out_dim`` mapping token ids and
  attention mask (B, T) to (B, out_dim).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from fv2es.errors import ConfigError
from fv2es.models.config import ModelConfig

BRANCH_KINDS = ("text", "audio", "visual")
# Modules that define branch architectures; each registers its builders when imported.
BRANCH_MODULES = ("fv2es.models.text", "fv2es.models.audio", "fv2es.models.visual", "fv2es.models.expression")
# Modules that define presets; light (no torch), imported on the first preset lookup.
PRESET_MODULES = ("fv2es.models.presets",)

_PRESETS: dict[str, Callable[[], ModelConfig]] = {}
_BRANCHES: dict[str, dict[str, Callable]] = {kind: {} for kind in BRANCH_KINDS}


def register_model(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
    """Register a preset (a function returning a :class:`ModelConfig`) under its function name."""
    _PRESETS[fn.__name__] = fn
    return fn


def register_branch(kind: str, name: str) -> Callable[[Callable], Callable]:
    """Decorator: register ``builder(config, **kwargs) -> nn.Module`` as architecture ``name`` of ``kind``."""
    if kind not in BRANCH_KINDS:
        raise ValueError(f"branch kind {kind!r} is not one of {BRANCH_KINDS}")

    def decorate(builder: Callable) -> Callable:
        _BRANCHES[kind][name] = builder
        return builder

    return decorate


def _import_all(modules: tuple[str, ...]) -> None:
    # By name, not by an import statement: the registry stays below every module that registers.
    for module in modules:
        importlib.import_module(module)


def list_models() -> list[str]:
    """The registered preset names, sorted."""
    _import_all(PRESET_MODULES)
    return sorted(_PRESETS)


def get_preset(name: str) -> ModelConfig:
    """The :class:`ModelConfig` registered as ``name``."""
    if name not in list_models():
        raise ConfigError(f"model.preset: unknown model {name!r}; known: {', '.join(list_models())}")
    return _PRESETS[name]()


def list_branches(kind: str) -> list[str]:
    """The architecture names registered for branch ``kind`` (``text``, ``audio`` or ``visual``)."""
    _import_all(BRANCH_MODULES)
    return sorted(_BRANCHES[kind])


def check_architectures(config: ModelConfig) -> None:
    """Refuse a config whose used branches name an unregistered architecture."""
    for kind in BRANCH_KINDS:
        if kind[0] not in config.modalities:
            continue
        name = getattr(config, f"{kind}_arch")
        if name not in list_branches(kind):
            raise ConfigError(f"model.{kind}_arch: unknown {kind} architecture {name!r}; "
                              f"known: {', '.join(list_branches(kind))}")


def get_branch(kind: str, name: str) -> Callable:
    """The builder registered as architecture ``name`` of branch ``kind``."""
    if name not in list_branches(kind):
        raise ConfigError(f"model.{kind}_arch: unknown {kind} architecture {name!r}; "
                          f"known: {', '.join(list_branches(kind))}")
    return _BRANCHES[kind][name]


def build_branch(kind: str, config: ModelConfig, **kwargs):
    """Build the ``kind`` branch named by ``config.<kind>_arch`` (calls its builder; imports none)."""
    check_architectures(config)
    return get_branch(kind, getattr(config, f"{kind}_arch"))(config, **kwargs)
