"""Named model configurations: the paper's and a tiny one for tests and CPU demos."""

from __future__ import annotations

from collections.abc import Callable

from fv2es.config import ConfigError, ModelConfig

_PRESETS: dict[str, Callable[[], ModelConfig]] = {}


def register_model(fn: Callable[[], ModelConfig]) -> Callable[[], ModelConfig]:
    """Register a preset under its function name."""
    _PRESETS[fn.__name__] = fn
    return fn


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
    return sorted(_PRESETS)


def get_preset(name: str) -> ModelConfig:
    """The :class:`ModelConfig` registered as ``name``."""
    if name not in _PRESETS:
        raise ConfigError(f"model.preset: unknown model {name!r}; known: {', '.join(list_models())}")
    return _PRESETS[name]()


def create_model(config: ModelConfig | str, pretrained_text: bool = True):
    """Build an :class:`~fv2es.models.fv2es.FV2ES` from a config or a preset name."""
    from fv2es.models.fv2es import FV2ES

    if isinstance(config, str):
        config = get_preset(config)
    return FV2ES(config, pretrained_text=pretrained_text)
