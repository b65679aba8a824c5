"""Visual branch: a conv stem and a RepVGG stack over 48x48 face crops, one vector per frame.

In training each RepVGG block is multi-branch (3x3 conv+BN, 1x1 conv+BN and, when the shape
allows, an identity BN, summed). :meth:`VisualBranch.reparameterize` folds every block into a
single 3x3 conv with bias: the same function with a third of the layers, for inference.
The stem conv has a bias, as in the seed (its checkpoints carry it).
"""

from __future__ import annotations

import torch
from timm.models.byobnet import RepVggBlock
from torch import nn

from fv2es.models.config import ModelConfig
from fv2es.models.geometry import FACE_SIZE
from fv2es.models.registry import register_branch


class VisualBranch(nn.Module):
    """Face crops (N, 3, 48, 48), normalised -> frame features (N, out_dim)."""

    def __init__(self, channels: tuple[int, ...], hidden: int, out_dim: int):
        super().__init__()
        c0, c1, c2, c3, c4, c5 = channels
        self.stem = nn.Sequential(
            nn.Conv2d(3, c0, kernel_size=5, padding=2),
            nn.BatchNorm2d(c0),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # 48 -> 24
        )
        self.blocks = nn.Sequential(
            RepVggBlock(c0, c1),
            RepVggBlock(c1, c2),
            RepVggBlock(c2, c3),
            nn.MaxPool2d(2),  # 24 -> 12
            RepVggBlock(c3, c4),
            nn.MaxPool2d(2),  # 12 -> 6
            RepVggBlock(c4, c5),
            nn.MaxPool2d(2),  # 6 -> 3
        )
        self.flat_dim = c5 * (FACE_SIZE // 16) ** 2
        self.proj = nn.Sequential(
            nn.Flatten(),
            nn.Linear(self.flat_dim, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, out_dim),
        )

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """Normalised faces (N, 3, 48, 48) -> features (N, out_dim)."""
        return self.proj(self.blocks(self.stem(faces)))

    @property
    def reparameterized(self) -> bool:
        """True once every RepVGG block is folded (inference form)."""
        return all(b.reparam_conv is not None for b in self.blocks if isinstance(b, RepVggBlock))

    def reparameterize(self) -> None:
        """Fold every RepVGG block into one 3x3 conv (inference form). Irreversible."""
        for block in self.blocks:
            if isinstance(block, RepVggBlock):
                block.reparameterize()


@register_branch("visual", "repvgg")
def repvgg_visual(config: ModelConfig, *, out_dim: int) -> VisualBranch:
    """The seed's visual branch: conv stem, five RepVGG blocks, a 2-layer per-frame projection."""
    return VisualBranch(config.visual_channels, config.visual_hidden, out_dim)
