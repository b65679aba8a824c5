"""Audio branch: hierarchical attention (timm's NesT) over spectrogram pieces.

Each piece is 32 mel frames (0.4 s) of a 128-bin mel spectrogram, laid out as (4, 32, 32): four
bands of 32 mel bins as channels. NesT with ``patch_size=1`` attends within 8x8 blocks, then
aggregates blocks level by level, giving a (C, 8, 8) map per piece.
"""

from __future__ import annotations

import torch
from timm.models.nest import Nest
from torch import nn

PIECE_SHAPE = (4, 32, 32)


class AudioBranch(nn.Module):
    """Spectrogram pieces (P, 4, 32, 32) -> piece features (P, out_dim)."""

    def __init__(
        self,
        embed_dims: tuple[int, ...],
        heads: tuple[int, ...],
        depths: tuple[int, ...],
        hidden: int,
        out_dim: int,
        drop_path: float = 0.0,
    ):
        super().__init__()
        channels, size, _ = PIECE_SHAPE
        self.nest = Nest(
            img_size=size,
            in_chans=channels,
            patch_size=1,
            num_levels=len(depths),
            embed_dims=tuple(embed_dims),
            num_heads=tuple(heads),
            depths=tuple(depths),
            num_classes=0,
            drop_path_rate=drop_path,
        )
        grid = size // 2 ** (len(depths) - 1)  # blocks merge 2x2 per level: 32 -> 8
        self.flat_dim = embed_dims[-1] * grid * grid
        self.proj = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.flat_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, pieces: torch.Tensor) -> torch.Tensor:
        if pieces.shape[0] == 0:
            # NesT's block reshapes cannot take an empty batch. Run one blank piece and keep none
            # of it, so every parameter stays in the graph (DDP expects a gradient for each).
            return self.proj(self.nest.forward_features(pieces.new_zeros((1, *PIECE_SHAPE))))[:0]
        return self.proj(self.nest.forward_features(pieces))
