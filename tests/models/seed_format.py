"""Seed-format state dicts for tests, built from the key lists generated from the seed's own code
(copied from ``shared/fixtures/seed/`` to ``fixtures/``): random values, the training and the
folded (deploy) form.

The text encoder is a small ALBERT (2 layers) built here, with a tiny tokenizer, so nothing is
downloaded; its keys replace the list's ``T.albert.*`` (and ``t_out`` takes its width).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import torch

SEED_FIXTURES = Path(__file__).resolve().parent / "fixtures"
TRAINING_KEYS = SEED_FIXTURES / "mme2e_tav_state_dict_keys.tsv"
DEPLOY_KEYS = SEED_FIXTURES / "mme2e_tav_deploy_state_dict_keys.tsv"
WORDS = ["i", "am", "so", "happy", "today", "what", "a", "lovely", "day", "no", "hello", "feel", "angry", "sad", "excited", "frustrated", "neutral"]


def read_key_list(path: Path) -> dict[str, tuple[int, ...]]:
    """name -> shape, in file order."""
    out = {}
    for line in path.read_text().splitlines()[1:]:
        name, shape = line.split("\t")
        out[name] = tuple(ast.literal_eval(shape))
    return out


def make_small_albert(folder: Path) -> dict:
    """Write a 2-layer ALBERT config and a tiny tokenizer to ``folder``; returns the config dict."""
    from transformers import AlbertConfig, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab-source.txt"
    vocab.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]) + "\n")
    BertTokenizer(vocab_file=str(vocab)).save_pretrained(str(folder))
    vocab.unlink()
    config = AlbertConfig(vocab_size=64, embedding_size=16, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=2, intermediate_size=48, max_position_embeddings=128)
    config.save_pretrained(str(folder))
    return config.to_dict()


def _random(name: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    if name.endswith("num_batches_tracked"):
        return torch.tensor(7, dtype=torch.long)
    if name.endswith("running_var"):
        return torch.rand(shape, generator=gen) + 0.5  # a variance: positive
    if re.search(r"(bn|rbr_identity|V\.1|norm\d?|LayerNorm)\.weight$", name):
        return 1.0 + 0.1 * torch.randn(shape, generator=gen)  # norm scales near 1, as trained
    return 0.05 * torch.randn(shape, generator=gen)


def seed_training_state(albert_config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """A training-form seed state dict (random values) with a small ALBERT as ``T.albert``.

    Includes what an import must drop: ``mtcnn.*``, NesT's unused ``head`` and ALBERT's stale
    ``position_ids`` buffer.
    """
    from transformers import AlbertModel
    from transformers.models.albert.modeling_albert import AlbertConfig

    gen = torch.Generator().manual_seed(seed)
    keys = read_key_list(TRAINING_KEYS)
    state = {}
    for name, shape in keys.items():
        if name.startswith("T.albert."):
            continue
        if name == "t_out.weight":
            shape = (shape[0], albert_config["hidden_size"])
        state[name] = _random(name, shape, gen)
    torch.manual_seed(seed)
    albert = AlbertModel(AlbertConfig.from_dict(albert_config))
    for name, tensor in albert.state_dict().items():
        state[f"T.albert.{name}"] = tensor + 0.01 * torch.randn(tensor.shape, generator=gen)
    state["T.albert.embeddings.position_ids"] = torch.arange(albert_config["max_position_embeddings"])[None]
    return state


def _fold_bn(weight, bn: dict[str, torch.Tensor], eps: float = 1e-5):
    std = (bn["running_var"] + eps).sqrt()
    scale = bn["weight"] / std
    return weight * scale.reshape(-1, 1, 1, 1), bn["bias"] - bn["running_mean"] * scale


def fold_seed_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The seed's ``switch_to_deploy()`` written out independently: every RepVGG block's three
    branches folded into ``rbr_reparam.{weight,bias}`` (3x3 + padded 1x1 + identity, BN folded)."""
    out = {k: v for k, v in state.items() if ".rbr_" not in k}
    blocks = sorted({k.split(".rbr_")[0] for k in state if ".rbr_" in k})
    for block in blocks:
        def part(prefix):
            return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

        dense, one = part(f"{block}.rbr_dense."), part(f"{block}.rbr_1x1.")
        k3, b3 = _fold_bn(dense["conv.weight"], {k[3:]: v for k, v in dense.items() if k.startswith("bn.")})
        k1, b1 = _fold_bn(one["conv.weight"], {k[3:]: v for k, v in one.items() if k.startswith("bn.")})
        kernel, bias = k3 + torch.nn.functional.pad(k1, [1, 1, 1, 1]), b3 + b1
        identity = part(f"{block}.rbr_identity.")
        if identity:
            channels = kernel.shape[0]
            eye = torch.zeros(channels, channels, 3, 3)
            eye[torch.arange(channels), torch.arange(channels), 1, 1] = 1.0
            ki, bi = _fold_bn(eye, identity)
            kernel, bias = kernel + ki, bias + bi
        out[f"{block}.rbr_reparam.weight"] = kernel
        out[f"{block}.rbr_reparam.bias"] = bias
    return out


def dropped(name: str) -> bool:
    """Keys an import leaves out on purpose."""
    return bool(re.match(r"^(mtcnn\.|A\.0\.head\.|T\.albert\.embeddings\.position_ids$)", name))
