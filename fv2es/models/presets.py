"""The shipped presets: whole model configurations by name (``model.preset``).

Registered with :func:`~fv2es.models.registry.register_model` when this module is imported,
which the registry does on its first preset lookup. Light: no torch.
"""

from __future__ import annotations

from fv2es.models.config import ModelConfig
from fv2es.models.registry import register_model


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


# The baselines read the feature sequences fv2es computes from its shards
# (fv2es.models.handcrafted.HFC_SIZES: text 384, audio 88, visual 140); the seed's own -hfcs default,
# 300 144 35, is the width of MESM's release (fv2es.data.hcf). Text vectors come from MiniLM.
_HAND_CRAFTED = dict(hfc_sizes=(384, 88, 140), text_model="minilm", text_max_len=100)


@register_model
def lf_rnn() -> ModelConfig:
    """The seed's LF-RNN baseline: one Bi-LSTM per modality over hand-crafted feature sequences."""
    return ModelConfig(preset="lf_rnn", arch="lf_rnn", **_HAND_CRAFTED)


@register_model
def lf_transformer() -> ModelConfig:
    """The seed's LF-Transformer baseline: a CLS-token transformer (2 layers, 4/2/5 heads) per modality."""
    return ModelConfig(preset="lf_transformer", arch="lf_transformer", trans_nlayers=2, trans_ff_dim=2048,
                       dropout=0.1, **_HAND_CRAFTED)
