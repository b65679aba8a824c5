"""The model section of a run's configuration: :class:`ModelConfig`, beside the model it builds.

``arch`` names the network: ``fv2es`` (end to end from faces, spectrogram pieces and tokens), or
one of the seed's late-fusion baselines on hand-crafted feature sequences, ``lf_rnn`` and
``lf_transformer`` (:mod:`fv2es.models.baselines`, issue 24), which read the ``hfc_*`` and
recurrent fields below and ignore the branch fields.

Defaults are the seed's FV2ES (MODEL.md, issue 11): the paper preset builds exactly the network
whose state dict the seed's released checkpoints hold. Each branch names its architecture
(``visual_arch``, ``audio_arch``, ``text_arch``): a name registered in
:mod:`fv2es.models.registry` by the module that defines it. The input geometry (face crop size,
spectrogram piece shape, sample rate) is fixed by :mod:`fv2es.models.geometry` and exposed here.

This module imports no torch and not :mod:`fv2es.config` (which imports it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from fv2es.configlib import choice, positive, unit_interval
from fv2es.emotions import IEMOCAP_EMOTIONS
from fv2es.errors import ConfigError
from fv2es.models import geometry

# The seed stacks per-modality logits in this order before its weighted fusion.
FUSION_ORDER = "tva"
# ... and its baselines (LF_RNN, LF_Transformer) in this one.
BASELINE_FUSION_ORDER = "tav"
ARCHS = ("fv2es", "lf_rnn", "lf_transformer")


@dataclass(frozen=True)
class ModelConfig:
    """The FV2ES network (MODEL.md). Defaults are the paper configuration (the seed's network)."""

    preset: str = "fv2es_paper"  # registry name whose values this section starts from
    arch: str = field(default="fv2es", metadata=choice(*ARCHS))  # the network (see the module doc)
    emotions: tuple[str, ...] = IEMOCAP_EMOTIONS  # output classes, in logit order
    modalities: str = "tav"  # any non-empty subset of t(ext), a(udio), v(isual)
    text_arch: str = "hf"  # text branch architecture (registry name): a Hugging Face encoder
    text_model: str = "albert-base-v2"  # HF name, local folder or fsspec URI; "minilm" = the packaged encoder
    text_max_len: int = 100  # tokens kept of each transcript
    trans_dim: int = 64  # width of the per-modality temporal transformers
    trans_nlayers: int = 4  # layers of each temporal transformer
    trans_nheads: int = 4  # attention heads of each temporal transformer
    trans_ff_dim: int = 2048  # feed-forward width inside the temporal transformers (torch default)
    dropout: float = 0.1  # dropout inside the temporal transformers
    visual_arch: str = "repvgg"  # visual branch architecture (registry name)
    visual_channels: tuple[int, ...] = (64, 64, 64, 128, 256, 512)  # stem, then the five RepVGG blocks
    visual_hidden: int = 1024  # hidden width of the per-frame projection (4608 -> this -> trans_dim)
    audio_arch: str = "nest"  # audio branch architecture (registry name)
    audio_embed_dims: tuple[int, ...] = (128, 256, 512)  # NesT level widths
    audio_heads: tuple[int, ...] = (4, 8, 16)  # NesT heads per level
    audio_depths: tuple[int, ...] = (2, 2, 20)  # NesT blocks per level
    audio_patch_kernel: int = 3  # NesT patch embedding kernel: 3 = the seed's 3x3 conv; 1 = timm's 1x1
    audio_drop_path: float = 0.5  # NesT stochastic depth (timm's default, what the seed trained with)
    audio_hidden: int = 1024  # hidden width of the per-piece projection (32768 -> this -> trans_dim)
    fusion: str = field(default="weighted", metadata=choice("weighted", "mean"))  # late fusion
    # The seed's baselines (arch lf_rnn / lf_transformer) on hand-crafted feature sequences:
    hfc_sizes: tuple[int, ...] = (300, 144, 35)  # feature widths text, audio, visual (seed -hfcs)
    hfc_heads: tuple[int, ...] = (4, 2, 5)  # lf_transformer heads text, audio, visual (fixed in the seed)
    num_layers: int = 1  # lf_rnn recurrent layers (the seed's network has 1; its -nl is never read)
    hidden_size: int = 0  # lf_rnn recurrent width; 0 = each modality's feature width (the seed's)
    bidirectional: bool = True  # lf_rnn both directions (the seed's network always; its -bi is never read)
    gru: bool = False  # lf_rnn GRU cells instead of LSTM (the seed parses --gru and builds LSTMs)

    def __post_init__(self):
        mods = self.modalities
        if not mods or set(mods) - set("tav") or len(set(mods)) != len(mods):
            raise ConfigError(f"model.modalities: {mods!r} must be a non-empty subset of 't', 'a', 'v'")
        if not self.emotions or len(set(self.emotions)) != len(self.emotions):
            raise ConfigError(f"model.emotions: {self.emotions!r} must be distinct names")
        if self.trans_dim % self.trans_nheads:
            raise ConfigError(
                f"model.trans_dim ({self.trans_dim}) must be divisible by model.trans_nheads ({self.trans_nheads})"
            )
        if len(self.visual_channels) != 6:
            raise ConfigError("model.visual_channels: give 6 widths (stem + five RepVGG blocks)")
        if not (len(self.audio_embed_dims) == len(self.audio_heads) == len(self.audio_depths) == 3):
            raise ConfigError("model.audio_embed_dims/audio_heads/audio_depths: give 3 levels each")
        for dim, heads in zip(self.audio_embed_dims, self.audio_heads):
            if dim % heads:
                raise ConfigError(f"model.audio_embed_dims: {dim} is not divisible by its heads ({heads})")
        if self.audio_patch_kernel not in (1, 3):
            raise ConfigError(f"model.audio_patch_kernel: {self.audio_patch_kernel} is not 1 or 3")
        if len(self.hfc_sizes) != 3 or len(self.hfc_heads) != 3 or min(self.hfc_sizes + self.hfc_heads) <= 0:
            raise ConfigError("model.hfc_sizes/hfc_heads: give 3 positive values each (text, audio, visual)")
        if self.arch == "lf_transformer":
            for mod, size, heads in zip("tav", self.hfc_sizes, self.hfc_heads):
                if size % heads:
                    raise ConfigError(f"model.hfc_sizes: {mod} width {size} is not divisible by its "
                                      f"lf_transformer heads ({heads}, model.hfc_heads)")
        if self.hidden_size < 0:
            raise ConfigError(f"model.hidden_size: {self.hidden_size} must be >= 0 (0 = the feature width)")
        positive(self, "num_layers", "text_max_len", "trans_dim", "trans_nlayers", "trans_nheads", "trans_ff_dim",
                 "visual_hidden", "audio_hidden")
        unit_interval(self, "dropout", "audio_drop_path")

    @property
    def num_emotions(self) -> int:
        """Number of output classes."""
        return len(self.emotions)

    @property
    def fusion_order(self) -> str:
        """The modalities in the order their logits are stacked for fusion (the seed's t, v, a for
        FV2ES; t, a, v for its baselines)."""
        order = FUSION_ORDER if self.arch == "fv2es" else BASELINE_FUSION_ORDER
        return "".join(m for m in order if m in self.modalities)

    @property
    def hand_crafted(self) -> bool:
        """True for the seed's baselines, which read hand-crafted feature sequences."""
        return self.arch != "fv2es"

    @property
    def face_size(self) -> int:
        """Side of the square face crop the visual branch takes (``faces.image_size`` must equal it)."""
        return geometry.FACE_SIZE

    @property
    def piece_shape(self) -> tuple[int, int, int]:
        """One spectrogram piece as the audio branch takes it: (bands, mel bins per band, frames)."""
        return geometry.PIECE_SHAPE

    @property
    def sample_rate(self) -> int:
        """Audio rate the spectrogram geometry assumes (``spectrogram.sample_rate`` must equal it)."""
        return geometry.SAMPLE_RATE
