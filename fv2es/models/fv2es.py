"""The FV2ES network: text + voice + face branches, temporal encoders and weighted late fusion."""

from __future__ import annotations

import torch
from torch import nn

from fv2es.models.config import ModelConfig
from fv2es.models.inputs import ModelInputs
from fv2es.models.registry import build_branch
from fv2es.models.temporal import TemporalEncoder


class FV2ES(nn.Module):
    """Multimodal emotion classifier (MODEL.md).

    ``forward`` returns fused logits (B, E). Each modality gives logits through its own head;
    they are stacked (B, E, M) in the seed's order text, visual, audio (``config.fusion_order``)
    and fused by a learned weighted sum (``Linear(M, 1, bias=False)``). A modality absent for a
    sample (no face frames, no audio, empty transcript) is masked out of that sample's fusion
    rather than fused as garbage; with every modality present this is the seed's function.

    The branches are the architectures ``config.text_arch`` / ``audio_arch`` / ``visual_arch``
    name in :mod:`fv2es.models.registry`.
    """

    def __init__(self, config: ModelConfig, pretrained_text: bool = True, text_config: dict | None = None):
        super().__init__()
        self.config = config
        self.modalities = config.fusion_order
        dim = config.trans_dim
        temporal = dict(dim=dim, nlayers=config.trans_nlayers, nheads=config.trans_nheads,
                        ff_dim=config.trans_ff_dim, dropout=config.dropout)
        heads = {}
        if "t" in self.modalities:
            self.text = build_branch("text", config, pretrained=pretrained_text, hf_config=text_config)
            heads["t"] = nn.Linear(self.text.out_dim, config.num_emotions)
        if "a" in self.modalities:
            self.audio = build_branch("audio", config, out_dim=dim)
            self.audio_temporal = TemporalEncoder(**temporal)
            heads["a"] = nn.Linear(dim, config.num_emotions)
        if "v" in self.modalities:
            self.visual = build_branch("visual", config, out_dim=dim)
            self.visual_temporal = TemporalEncoder(**temporal)
            heads["v"] = nn.Linear(dim, config.num_emotions)
        self.heads = nn.ModuleDict(heads)
        if len(self.modalities) > 1 and config.fusion == "weighted":
            self.fusion = nn.Linear(len(self.modalities), 1, bias=False)
            nn.init.constant_(self.fusion.weight, 1.0 / len(self.modalities))
        else:
            self.fusion = None

    def modality_logits(self, x: ModelInputs) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-modality logits (B, E, M) in ``self.modalities`` order (t, v, a) and presence (B, M) bool."""
        logits, present = [], []
        for m in self.modalities:
            if m == "t":
                feature = self.text(x.text_ids, x.text_mask)
                present.append(x.text_present)
            elif m == "a":
                feature = self.audio_temporal(self.audio(x.pieces), x.piece_lens)
                present.append(x.piece_lens > 0)
            else:
                feature = self.visual_temporal(self.visual(x.faces), x.face_lens)
                present.append(x.face_lens > 0)
            logits.append(self.heads[m](feature))
        return torch.stack(logits, dim=-1), torch.stack(present, dim=-1).to(logits[0].device)

    def fuse(self, logits: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Masked late fusion: an absent modality contributes nothing to its sample."""
        mask = present.unsqueeze(1).to(logits.dtype)  # (B, 1, M)
        logits = logits * mask
        if self.fusion is not None:
            return self.fusion(logits).squeeze(-1)
        # "mean" (and the one-modality case): average over the modalities that are present.
        return logits.sum(-1) / mask.sum(-1).clamp(min=1.0)

    def forward(self, x: ModelInputs) -> torch.Tensor:
        """Fused logits (B, E) of a collated batch."""
        return self.fuse(*self.modality_logits(x))

    @property
    def reparameterized(self) -> bool:
        """True when the visual branch (if any) is in its folded inference form."""
        return "v" not in self.modalities or getattr(self.visual, "reparameterized", True)

    def reparameterize(self) -> FV2ES:
        """Switch the visual branch to its single-branch inference form (in place); returns self."""
        if "v" in self.modalities and hasattr(self.visual, "reparameterize"):
            self.visual.reparameterize()
        return self

    def text_parameters(self):
        """Parameters of the pretrained text encoder (trained at a lower learning rate)."""
        return list(self.text.parameters()) if "t" in self.modalities else []

    def text_config(self) -> dict | None:
        """The text encoder's Hugging Face config (a dict), or None without a text branch."""
        if "t" not in self.modalities or not hasattr(self.text, "config_dict"):
            return None
        return self.text.config_dict()
