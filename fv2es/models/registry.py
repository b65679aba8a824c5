"""Named models: presets (whole configurations) and branch architectures.

As in timm's ``register_model``, the entry point sits beside what it builds:

- a **preset** is a function returning a :class:`ModelConfig`, registered with
  :func:`register_model` (``model.preset`` in a config starts from it);
- a **branch architecture** is a builder registered with :func:`register_branch` in the module
  that defines the branch (``@register_branch("audio", "nest")`` in :mod:`fv2es.models.audio`);
  ``model.audio_arch`` / ``visual_arch`` / ``text_arch`` name it.

A new branch is therefore one module (listed in :data:`BRANCH_MODULES`, imported on first lookup
so that reading a config needs no torch) plus a YAML that selects it. Builders take the
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
BRANCH_MODULES = ("fv2es.models.text", "fv2es.models.audio", "fv2es.models.visual")

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


def _import_branch_modules() -> None:
    for module in BRANCH_MODULES:
        importlib.import_module(module)


def list_branches(kind: str) -> list[str]:
    """The architecture names registered for branch ``kind`` (``text``, ``audio`` or ``visual``)."""
    _import_branch_modules()
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


def build_branch(kind: str, config: ModelConfig, **kwargs):
    """Build the ``kind`` branch named by ``config.<kind>_arch``."""
    check_architectures(config)
    return _BRANCHES[kind][getattr(config, f"{kind}_arch")](config, **kwargs)


@register_model
def fv2es_paper() -> ModelConfig:
    """The seed's FV2ES on IEMOCAP: ALBERT-base text, NesT-B audio, RepVGG 64..512 faces."""
    return ModelConfig(preset="fv2es_paper")


@register_model
def fv2es_tiny() -> ModelConfig:
    """Small widths everywhere (about 0.3 M trainable parameters outside the text encoder)."""
    return ModelConfig(
        preset="fv2es_tiny",
        text_model="minilm",
        text_max_len=32,
        trans_dim=32,
        trans_nlayers=1,
        trans_nheads=2,
        trans_ff_dim=64,
        dropout=0.0,
        visual_channels=(8, 8, 8, 16, 16, 32),
        visual_hidden=64,
        audio_embed_dims=(16, 32, 32),
        audio_heads=(1, 2, 2),
        audio_depths=(1, 1, 1),
        audio_drop_path=0.0,
        audio_hidden=64,
    )


def list_models() -> list[str]:
    """The registered preset names, sorted."""
    return sorted(_PRESETS)


def get_preset(name: str) -> ModelConfig:
    """The :class:`ModelConfig` registered as ``name``."""
    if name not in _PRESETS:
        raise ConfigError(f"model.preset: unknown model {name!r}; known: {', '.join(list_models())}")
    return _PRESETS[name]()


def create_model(config: ModelConfig | str, pretrained_text: bool = True, text_config: dict | None = None):
    """Build an :class:`~fv2es.models.fv2es.FV2ES` from a config or a preset name.

    ``text_config`` (a Hugging Face config as a dict, as stored in checkpoints) builds the text
    encoder's architecture without looking anything up; its weights then come from a checkpoint.
    """
    from fv2es.models.fv2es import FV2ES

    if isinstance(config, str):
        config = get_preset(config)
    return FV2ES(config, pretrained_text=pretrained_text, text_config=text_config)
