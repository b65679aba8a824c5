"""Audio branch: hierarchical attention (timm's NesT) over spectrogram pieces.

Each piece is 32 mel frames (0.4 s) of a 128-bin mel spectrogram, laid out as (4, 32, 32): four
bands of 32 mel bins as channels (:mod:`fv2es.models.geometry`). NesT attends within 8x8 blocks,
then aggregates blocks level by level, giving a (C, 8, 8) map per piece.

The seed edited its copy of NesT so the patch embedding is an overlapping 3x3 convolution
(``Conv2d(4, 128, 3, padding=1)`` with bias) instead of timm's 1x1 projection for
``patch_size=1``; everything else is timm's ``Nest``. ``model.audio_patch_kernel`` chooses
(3, the seed's, by default). The seed's unused ImageNet head is not built (``num_classes=0``).
"""

from __future__ import annotations

import torch
from timm.models.nest import Nest
from torch import nn

from fv2es.models.config import ModelConfig
from fv2es.models.geometry import PIECE_SHAPE
from fv2es.models.registry import register_branch


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
        patch_kernel: int = 3,
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
        if patch_kernel != 1:
            # The seed's overlapping embedding; stride 1 and "same" padding keep the 32x32 grid.
            proj = nn.Conv2d(channels, embed_dims[0], patch_kernel, stride=1, padding=patch_kernel // 2)
            nn.init.trunc_normal_(proj.weight, std=0.02, a=-2, b=2)  # NesT's init for its convs
            nn.init.zeros_(proj.bias)
            self.nest.patch_embed.proj = proj
        grid = size // 2 ** (len(depths) - 1)  # blocks merge 2x2 per level: 32 -> 8
        self.flat_dim = embed_dims[-1] * grid * grid
        self.proj = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.flat_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, pieces: torch.Tensor) -> torch.Tensor:
        """Pieces (P, 4, 32, 32) -> features (P, out_dim); P may be 0."""
        if pieces.shape[0] == 0:
            # NesT's block reshapes cannot take an empty batch. Run one blank piece and keep none
            # of it, so every parameter stays in the graph (DDP expects a gradient for each).
            return self.proj(self.nest.forward_features(pieces.new_zeros((1, *PIECE_SHAPE))))[:0]
        return self.proj(self.nest.forward_features(pieces))


@register_branch("audio", "nest")
def nest_audio(config: ModelConfig, *, out_dim: int) -> AudioBranch:
    """The seed's audio branch: NesT (3 levels) with its 3x3 patch embedding, then a 2-layer projection."""
    return AudioBranch(config.audio_embed_dims, config.audio_heads, config.audio_depths, config.audio_hidden,
                       out_dim, drop_path=config.audio_drop_path, patch_kernel=config.audio_patch_kernel)
