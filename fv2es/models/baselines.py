"""The seed's late-fusion baselines on hand-crafted feature sequences: LF-RNN and LF-Transformer.

The seed's ``main.py --model lf_rnn`` / ``--model lf_transformer`` (``V2EM/src/model/baselines/``)
classify an utterance from three sequences of hand-crafted features: word vectors (text), frame
descriptors (audio) and frame face features (visual), of widths ``config.hfc_sizes``. Each
modality has its own encoder and head ``Linear(d, d // 2) -> ReLU -> Linear(d // 2, E)``; the
per-modality logits are stacked in the order text, audio, visual (not FV2ES's t, v, a) and fused
by ``Linear(M, 1, bias=False)``; one modality returns its logits as they are.

- :class:`LateFusionRNN` (the seed's ``LF_RNN``): an ``nn.LSTM(size, size)`` per modality. Text
  uses the output at the last time step of the padded batch; audio and visual the final hidden
  states of both directions. The seed builds it as ``LF_RNN(args)``, so its network is always one
  bidirectional LSTM layer of width = the feature width, whatever ``-nl``, ``-hs``, ``-bi``,
  ``--gru`` and ``-dr`` say; the config's ``num_layers``, ``hidden_size``, ``bidirectional`` and
  ``gru`` (defaults: that network) go beyond it.
- :class:`LateFusionTransformer` (the seed's ``LF_Transformer``): per modality the CLS-token
  transformer encoder FV2ES uses (:class:`~fv2es.models.temporal.TemporalEncoder`, torch's default
  layer), of width = the feature width, ``trans_nlayers`` layers and 4 / 2 / 5 heads. Audio and
  visual mask their padding; text, as in the seed, attends over the padded batch unmasked.

Parameter names follow the seed's (``rnns.t.weight_ih_l0``, ``transformers.a.encoder.layers.0...``,
``affines.v.2.weight``, ``weighted_fusion.weight``), and, as in the seed, all three modalities'
encoders and heads exist whatever ``modalities`` says, so a seed state dict loads strictly. Those of
modalities not in use are frozen (``requires_grad=False``), which also keeps DDP from waiting for
their gradients. A modality absent from a sample (an empty sequence) is masked out of that sample's
fusion, as in FV2ES; with every modality present the function is the seed's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch
from torch import nn

from fv2es.models.config import BASELINE_FUSION_ORDER, ModelConfig
from fv2es.models.temporal import TemporalEncoder, pad_packed

MODALITIES = BASELINE_FUSION_ORDER  # t, a, v: the seed's order of modules and of stacked logits
# The per-utterance sample keys holding each modality's (L, D) float32 feature sequence.
SAMPLE_KEYS = {"t": "hcf_text", "a": "hcf_audio", "v": "hcf_visual"}


@dataclass(frozen=True)
class HCFInputs:
    """A ragged batch of B utterances' hand-crafted feature sequences, packed along the first axis
    (as :class:`~fv2es.models.inputs.ModelInputs` packs frames); a length of 0 = absent."""

    text: torch.Tensor  # (sum text_lens, hfc_sizes[0]) word vectors
    text_lens: torch.Tensor  # (B,)
    audio: torch.Tensor  # (sum audio_lens, hfc_sizes[1]) frame descriptors
    audio_lens: torch.Tensor  # (B,)
    visual: torch.Tensor  # (sum visual_lens, hfc_sizes[2]) frame face features
    visual_lens: torch.Tensor  # (B,)

    @property
    def batch_size(self) -> int:
        """Number of utterances B."""
        return int(self.text_lens.shape[0])

    def modality(self, m: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(packed features, lengths) of modality ``m`` (``t``, ``a`` or ``v``)."""
        name = {"t": "text", "a": "audio", "v": "visual"}[m]
        return getattr(self, name), getattr(self, f"{name}_lens")

    def to(self, device, non_blocking: bool = False) -> HCFInputs:
        """The same batch with every tensor on ``device``."""
        return replace(
            self, **{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)}
        )


class HCFCollate:
    """Per-utterance dicts with ``hcf_text`` / ``hcf_audio`` / ``hcf_visual`` ((L, D) float arrays;
    empty or None = absent) -> :class:`HCFInputs`, checking each width against ``sizes``."""

    def __init__(self, sizes: Sequence[int]):
        self.sizes = tuple(int(s) for s in sizes)

    def __call__(self, samples: Sequence[dict]) -> HCFInputs:
        """Stack ``samples`` into one :class:`HCFInputs`."""
        packed = {}
        for m, size in zip(MODALITIES, self.sizes):
            parts, lens = [], []
            for s in samples:
                a = s.get(SAMPLE_KEYS[m])
                if a is None or len(a) == 0:
                    lens.append(0)
                    continue
                a = np.asarray(a, dtype=np.float32)
                if a.ndim != 2 or a.shape[1] != size:
                    raise ValueError(f"{SAMPLE_KEYS[m]}: expected (L, {size}) features "
                                     f"(model.hfc_sizes), got {a.shape}")
                parts.append(torch.from_numpy(a if a.flags.writeable else a.copy()))
                lens.append(a.shape[0])
            packed[m] = (torch.cat(parts) if parts else torch.zeros((0, size)), torch.tensor(lens, dtype=torch.long))
        (t, tl), (a, al), (v, vl) = packed["t"], packed["a"], packed["v"]
        return HCFInputs(t, tl, a, al, v, vl)


def _head(width: int, num_emotions: int) -> nn.Sequential:
    # The seed's per-modality head; indices 0 and 2 are its parameter names.
    return nn.Sequential(nn.Linear(width, width // 2), nn.ReLU(), nn.Linear(width // 2, num_emotions))


def _padded(features: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed -> (B, L, D) zero-padded at the end (the seed's ``padTensor``) and the mask (True =
    padding); at least one step long, so a batch where the modality is absent everywhere still runs."""
    padded, mask = pad_packed(features, lengths)
    if padded.shape[1] == 0:
        padded = padded.new_zeros((padded.shape[0], 1, padded.shape[2]))
        mask = mask.new_ones((mask.shape[0], 1))
    return padded, mask


class _LateFusion(nn.Module):
    """What both baselines share: heads, fusion, freezing, and the interface of FV2ES that the
    training loop, checkpoints and the predictor use."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.modalities = config.fusion_order  # t, a, v order

    def _add_heads(self, encoders: nn.ModuleDict, head_widths: Sequence[int]) -> None:
        """Heads and fusion, registered after the encoders (the seed's parameter order); then the
        modules of modalities not in use are frozen."""
        self.affines = nn.ModuleDict({m: _head(w, self.config.num_emotions) for m, w in zip(MODALITIES, head_widths)})
        # The seed's fusion (nn.Linear's default init), built even for one modality, then unused.
        self.weighted_fusion = nn.Linear(len(self.modalities), 1, bias=False)
        for m in MODALITIES:
            if m not in self.modalities:
                encoders[m].requires_grad_(False)
                self.affines[m].requires_grad_(False)
        if len(self.modalities) == 1 or self.config.fusion != "weighted":
            self.weighted_fusion.requires_grad_(False)

    def encode(self, m: str, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """(B, head width) utterance features of modality ``m``."""
        raise NotImplementedError

    def modality_logits(self, x: HCFInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-modality logits (B, E, M) in ``self.modalities`` order (t, a, v) and presence (B, M)."""
        logits, present = [], []
        for m in self.modalities:
            features, lengths = x.modality(m)
            logits.append(self.affines[m](self.encode(m, features, lengths)))
            present.append(lengths.to(features.device) > 0)
        return torch.stack(logits, dim=-1), torch.stack(present, dim=-1)

    def fuse(self, logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """The seed's fusion, with an absent modality contributing nothing to its sample."""
        if logits.shape[-1] == 1:
            return logits[..., 0]  # the seed returns one modality's logits as they are
        mask = present.unsqueeze(1).to(logits.dtype)
        logits = logits * mask
        if self.config.fusion == "weighted":
            return self.weighted_fusion(logits).squeeze(-1)
        return logits.sum(-1) / mask.sum(-1).clamp(min=1.0)

    def forward(self, x: HCFInputs) -> torch.Tensor:
        """Fused logits (B, E) of a collated batch."""
        return self.fuse(*self.modality_logits(x))

    # FV2ES's interface for the training loop, checkpoints and the predictor: nothing to fold, no
    # pretrained text encoder (the seed trains every parameter at one learning rate).
    reparameterized = True

    def reparameterize(self):
        """Nothing to fold; returns self."""
        return self

    def text_parameters(self) -> list:
        """None: the seed trains the baselines at one learning rate."""
        return []

    def text_config(self) -> None:
        """None: no Hugging Face text encoder."""
        return None


class LateFusionRNN(_LateFusion):
    """The seed's ``LF_RNN`` (see the module doc)."""

    def __init__(self, config: ModelConfig):
        cell = nn.GRU if config.gru else nn.LSTM
        dirs = 2 if config.bidirectional else 1
        hidden = [config.hidden_size or size for size in config.hfc_sizes]
        super().__init__(config)
        self.rnns = nn.ModuleDict({
            m: cell(input_size=size, hidden_size=h, num_layers=config.num_layers,
                    dropout=config.dropout if config.num_layers > 1 else 0.0, bidirectional=config.bidirectional)
            for m, size, h in zip(MODALITIES, config.hfc_sizes, hidden)
        })
        self._dirs = dirs
        self._add_heads(self.rnns, [h * dirs for h in hidden])

    def encode(self, m: str, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Text: the output at the padded batch's last step; audio/visual: the last layer's final
        hidden states, forward then backward (the seed runs the padded batch, unpacked)."""
        padded, _ = _padded(features, lengths)
        output, state = self.rnns[m](padded.transpose(0, 1))  # (L, B, dirs * H), seq-first as the seed
        if m == "t":
            return output[-1]
        h_n = state if self.config.gru else state[0]  # (layers * dirs, B, H)
        return h_n[-self._dirs:].transpose(0, 1).flatten(start_dim=1)


class LateFusionTransformer(_LateFusion):
    """The seed's ``LF_Transformer`` (see the module doc)."""

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        self.transformers = nn.ModuleDict({
            m: TemporalEncoder(size, config.trans_nlayers, heads, config.trans_ff_dim, config.dropout)
            for m, size, heads in zip(MODALITIES, config.hfc_sizes, config.hfc_heads)
        })
        self._add_heads(self.transformers, config.hfc_sizes)

    def encode(self, m: str, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The CLS output; text attends over the padded batch unmasked, as the seed's does."""
        if m == "t":
            padded, _ = _padded(features, lengths)
            batch, steps, width = padded.shape
            # Every utterance "as long as the batch": the encoder's mask is then all False.
            full = torch.full((batch,), steps, dtype=torch.long, device=lengths.device)
            return self.transformers[m](padded.reshape(batch * steps, width), full)
        # An utterance without this modality attends to its CLS vector alone (masked in fusion).
        return self.transformers[m](features, lengths)


BASELINES = {"lf_rnn": LateFusionRNN, "lf_transformer": LateFusionTransformer}


def create_baseline(config: ModelConfig) -> _LateFusion:
    """Build the baseline ``config.arch`` names (``lf_rnn`` or ``lf_transformer``)."""
    return BASELINES[config.arch](config)
