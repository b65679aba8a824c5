"""Building models: :func:`create_model` turns a config or a preset name into an FV2ES or, for
``arch`` ``lf_rnn`` / ``lf_transformer``, one of the seed's baselines (:mod:`fv2es.models.baselines`).

Apart from :mod:`fv2es.models.registry` (as timm keeps ``_factory.py`` apart from
``_registry.py``), so that the registry, which every branch module imports, imports no model.
"""

from __future__ import annotations

from fv2es.models.config import ModelConfig
from fv2es.models.fv2es import FV2ES
from fv2es.models.registry import get_preset


def create_model(config: ModelConfig | str, pretrained_text: bool = True, text_config: dict | None = None):
    """Build the network ``config.arch`` names (default an :class:`~fv2es.models.fv2es.FV2ES`) from a
    config or a preset name.

    ``text_config`` (a Hugging Face config as a dict, as stored in checkpoints) builds the text
    encoder's architecture without looking anything up; its weights then come from a checkpoint.
    """
    if isinstance(config, str):
        config = get_preset(config)
    if config.arch != "fv2es":
        from fv2es.models.baselines import create_baseline  # no text encoder, no timm

        return create_baseline(config)
    return FV2ES(config, pretrained_text=pretrained_text, text_config=text_config)
