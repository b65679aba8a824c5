"""Per-modality temporal encoder over ragged sequences.

A batch mixes utterances of different lengths, so frame/piece features arrive packed: one
(N_total, D) tensor plus per-utterance lengths. They are padded to (B, L, D), a learned CLS
vector is prepended, and a key-padding mask keeps every utterance blind to the padding of the
others; the CLS position is the utterance feature. As in the seed, there is no positional encoding,
the layers are torch's default ``nn.TransformerEncoderLayer`` (post-norm, ReLU) and the CLS vector
is an ``nn.Embedding(1, dim)`` named ``cls_emb`` (so the seed's weights map one to one).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pad_sequence


def pad_packed(features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N_total, D) + lengths (B,) -> padded (B, L, D) and a padding mask (B, L), True = padding."""
    chunks = torch.split(features, lengths.tolist())
    padded = pad_sequence(list(chunks), batch_first=True)  # stays in the graph even when empty
    steps = torch.arange(padded.shape[1], device=features.device)
    mask = steps[None, :] >= lengths.to(features.device)[:, None]
    return padded, mask


class TemporalEncoder(nn.Module):
    """Packed features + lengths -> one vector per utterance (the CLS output)."""

    def __init__(self, dim: int, nlayers: int, nheads: int, ff_dim: int, dropout: float):
        super().__init__()
        self.cls_emb = nn.Embedding(1, dim)  # the seed's CLS vector (and its N(0, 1) init)
        layer = nn.TransformerEncoderLayer(dim, nheads, ff_dim, dropout, batch_first=True)
        # Nested tensors would drop fully padded positions in eval mode only, so train and
        # eval would take different code paths; keep one path.
        self.encoder = nn.TransformerEncoder(layer, nlayers, enable_nested_tensor=False)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Packed features (N_total, D) + lengths (B,) -> CLS outputs (B, D)."""
        padded, mask = pad_packed(features, lengths)
        batch = padded.shape[0]
        cls = self.cls_emb.weight[None].expand(batch, -1, -1).to(padded.dtype)
        tokens = torch.cat([cls, padded], dim=1)
        mask = torch.cat([mask.new_zeros((batch, 1)), mask], dim=1)
        return self.encoder(tokens, src_key_padding_mask=mask)[:, 0]
