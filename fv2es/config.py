"""Configs are data: frozen dataclasses loaded from YAML and checked.

A run's configuration is one :class:`Config` made of sections (``model``, ``train``, ``data``).
It is built from, in order: the section defaults (the paper's values), the model preset named
by ``model.preset`` (see :mod:`fv2es.models.registry`), a YAML file, and ``key=value`` overrides
from the command line (``model.trans_dim=32``, ``train.lr=1e-4``). Unknown keys and values of
the wrong type or outside their allowed set are refused with a :class:`ConfigError` naming them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fv2es.asr.config import AsrConfig
from fv2es.configlib import choice as _choice
from fv2es.configlib import from_dict, to_dict
from fv2es.configlib import positive as _positive
from fv2es.errors import ConfigError
from fv2es.media.decode import DecodeConfig
from fv2es.media.diarize import SpeakersConfig
from fv2es.media.faces import FaceConfig
from fv2es.media.spectrogram import SpectrogramConfig
from fv2es.models.config import ModelConfig
from fv2es.models.registry import check_architectures, get_preset


@dataclass(frozen=True)
class TrainConfig:
    """The training recipe (MODEL.md, seed defaults)."""

    lr: float = 4.5e-6  # Adam learning rate of the non-text parameters
    text_lr_factor: float = 10.0  # text-branch lr = lr / this
    weight_decay: float = 0.0  # L2 weight decay
    epochs: int = 30  # maximum epochs
    batch_size: int = 2  # utterances per step (per worker)
    early_stop: int = 6  # epochs without a better validation average F1 before stopping
    loss: str = field(default="bce", metadata=_choice("bce", "ce"))  # bce: pos-weighted BCE; ce: softmax
    optim: str = field(default="adam", metadata=_choice("adam", "sgd"))  # optimiser
    clip: float = -1.0  # gradient-norm clipping; <= 0 disables
    scheduler: bool = False  # reduce-on-plateau on validation loss
    seed: int = 0  # seeds torch, numpy and python
    num_workers: int = 1  # Ray Train workers (DDP processes)
    worker_cpus: float = 1.0  # CPUs reserved per worker: leave some for Ray Data's reads (2 workers on 2 CPUs: 0.5)
    use_gpu: bool = False  # one GPU per worker
    bf16: bool = True  # bf16 autocast when on CUDA (ignored on CPU)
    # fp32 | bf16 | auto: bf16 on CUDA with bf16 and on CPUs with native bf16 (avx512_bf16 / amx_bf16)
    precision: str = field(default="auto", metadata=_choice("auto", "fp32", "bf16"))
    max_failures: int = 2  # worker failures survived by restoring the last checkpoint
    # checkpoint_epoch_NNN/ folders kept in the run (>= 2: the best and the last always stay); 0 keeps all
    keep_checkpoints: int = 2

    def __post_init__(self):
        _positive(self, "lr", "epochs", "batch_size", "early_stop", "text_lr_factor", "num_workers", "worker_cpus")
        if self.keep_checkpoints == 1 or self.keep_checkpoints < 0:
            raise ConfigError("train.keep_checkpoints must be 0 (keep all) or >= 2 (the best and the last stay)")
        if self.weight_decay < 0:
            raise ConfigError("train.weight_decay must be >= 0")


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how utterances are sampled."""

    dataset: str = field(default="iemocap", metadata=_choice("iemocap", "mosei", "manifest"))  # corpus kind
    datapath: str = ""  # URI of the raw dataset or of preprocessed shards (any fsspec path)
    split_seed: int = 0  # seed of the random 70/10/20 split
    # train/valid/test shares of the random split when no lists are given (fv2es.data.splits has no
    # default of its own: this is the one place the seed's 70/10/20 is written)
    split_ratios: tuple[float, ...] = (0.7, 0.1, 0.2)
    # preprocessing: also write the seed's baselines' feature sequences (fv2es.models.handcrafted)
    hand_crafted: bool = False

    def __post_init__(self):
        if len(self.split_ratios) != 3 or abs(sum(self.split_ratios) - 1.0) > 1e-6 or min(self.split_ratios) < 0:
            raise ConfigError(f"data.split_ratios: {self.split_ratios!r} must be 3 shares summing to 1")


VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".wmv", ".mpg", ".mpeg",
                    ".ts", ".3gp")


@dataclass(frozen=True)
class SegmentsConfig:
    """The segmentation plan: which spans of a video are scored (README: Segments)."""

    mode: str = field(default="auto", metadata=_choice("auto", "window", "whole"))  # see README
    window_s: float = 10.0  # length of fixed windows (the last one may be shorter)
    min_segment_s: float = 1.0  # speech segments shorter than this are merged with a neighbour
    max_segment_s: float = 120.0  # longer speech or whole-video segments are cut into pieces of at most this
    per_person: bool = False  # one row per visible face track of a segment, each scored on its crops

    def __post_init__(self):
        _positive(self, "window_s", "min_segment_s", "max_segment_s")
        if self.min_segment_s > self.max_segment_s:
            raise ConfigError(f"segments.min_segment_s ({self.min_segment_s}) must be <= "
                              f"segments.max_segment_s ({self.max_segment_s})")


@dataclass(frozen=True)
class ResourcesConfig:
    """What each stage of the media pipeline reserves (README: Scale); scoring and preprocessing."""

    chunk_s: float = 60.0  # media seconds decoded per call: bounds a decode task's memory
    decode_cpus: float = 0.0  # CPUs reserved per decode task (one decoder thread each); 0: from the cluster
    decode_timeout_s: float = 600.0  # per decode call; past it the decoder process is killed
    decode_retries: int = 2  # tries again after a transient failure (decoder_crashed, unreadable), with backoff
    retry_backoff_s: float = 1.0  # wait before the first retry; doubled before each next one
    spectrogram_cpus: float = 0.25  # CPUs reserved per spectrogram task (Ray may fuse it into the face actors)
    # 0 (CPUs, counts) or -1 (GPU shares): sized from the cluster (fv2es.compute.size_resources)
    face_actors: int = 0  # face-crop actors
    face_cpus: float = 0.0  # CPUs reserved per face actor (its torch threads: at least 1)
    face_gpus: float = -1.0  # GPUs per face actor; > 0 runs MTCNN on CUDA
    face_batch_size: int = 8  # segments per face-stage call
    asr_actors: int = 0  # speech-to-text actors (only when asr.mode is not never)
    asr_cpus: float = 0.0  # CPUs reserved per ASR actor (its CTranslate2 threads: at least 1)
    asr_gpus: float = -1.0  # GPUs per ASR actor; > 0 runs Whisper on CUDA (float16)
    asr_batch_size: int = 4  # rows per ASR-stage call
    model_actors: int = 0  # model actors
    model_cpus: float = 0.0  # CPUs reserved per model actor
    model_gpus: float = -1.0  # GPUs per model actor; > 0 runs the model on CUDA
    model_threads: int = 0  # torch threads per model actor on CPU
    model_batch_size: int = 0  # most segments per model call (and per forward pass); 0: 4 on CPU, 16 on GPU
    # The model's batch budget: spectrogram pieces / face frames per forward pass. Segments of many
    # videos share a pass up to it; a longer segment runs alone, its encoders in slices of it.
    model_batch_pieces: int = 0
    model_batch_frames: int = 0
    # Elastic pools (README: Running on a cluster): the cluster at its largest; 0: as it is at the start
    max_cpus: float = 0.0  # CPUs of the whole cluster at its largest (an autoscaler's ceiling)
    max_gpus: float = 0.0  # GPUs likewise; > 0 with none at the start: the GPU stages ask for one
    face_max_actors: int = 0  # most face actors; 0: sized from max_cpus / max_gpus
    asr_max_actors: int = 0  # most speech-to-text actors; 0: likewise
    model_max_actors: int = 0  # most model actors; 0: likewise

    def __post_init__(self):
        _positive(self, "chunk_s", "decode_timeout_s", "spectrogram_cpus", "face_batch_size", "asr_batch_size")
        for name in ("decode_cpus", "face_actors", "face_cpus", "asr_actors", "asr_cpus", "model_actors",
                     "model_cpus", "model_threads", "model_batch_size", "model_batch_pieces", "model_batch_frames", "decode_retries",
                     "retry_backoff_s", "max_cpus", "max_gpus", "face_max_actors", "asr_max_actors", "model_max_actors"):
            if getattr(self, name) < 0:
                raise ConfigError(f"resources.{name} must be >= 0 (0: sized from the cluster), "
                                  f"got {getattr(self, name)!r}")
        for name in ("face_gpus", "asr_gpus", "model_gpus"):
            if getattr(self, name) < 0 and getattr(self, name) != -1:
                raise ConfigError(f"resources.{name} must be >= 0 (-1: sized from the cluster), "
                                  f"got {getattr(self, name)!r}")


@dataclass(frozen=True)
class ScoreConfig:
    """The scoring job's inputs and output parts (segments and resources have their own sections)."""

    part_videos: int = 64  # videos per committed output part file
    precision: str = field(default="auto", metadata=_choice("auto", "fp32", "bf16"))  # the model's; see README
    video_extensions: tuple[str, ...] = VIDEO_EXTENSIONS  # files taken from a folder or prefix
    write_retries: int = 5  # an output write that fails is tried again this often (backoff 1, 2, 4 ... s)
    lease_ttl_s: float = 120.0  # a run's lease on its output is stale after this long without a heartbeat

    def __post_init__(self):
        _positive(self, "part_videos", "lease_ttl_s")
        if self.write_retries < 0:
            raise ConfigError(f"score.write_retries must be >= 0, got {self.write_retries!r}")


@dataclass(frozen=True)
class Config:
    """A whole run's configuration.

    The media sections are the stages' own option classes (``fv2es.media``), so a stage and
    the config that drives it cannot drift apart.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)  # frame sampling, sizes, audio rate
    faces: FaceConfig = field(default_factory=FaceConfig)  # MTCNN face crops
    speakers: SpeakersConfig = field(default_factory=SpeakersConfig)  # who speaks when (voice embeddings)
    spectrogram: SpectrogramConfig = field(default_factory=SpectrogramConfig)  # mel pieces
    segments: SegmentsConfig = field(default_factory=SegmentsConfig)  # which spans are scored
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)  # actors, CPUs, GPUs, batch sizes
    score: ScoreConfig = field(default_factory=ScoreConfig)  # the scoring job's inputs and output parts
    asr: AsrConfig = field(default_factory=AsrConfig)  # speech to text (fv2es.asr)

    def __post_init__(self):
        check_sections_agree(self)

    def to_dict(self) -> dict[str, Any]:
        """The configuration as plain (YAML/JSON-able) data."""
        return to_dict(self)

    def digest(self) -> str:
        """A short stable hash of the configuration (for output metadata)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def check_sections_agree(cfg: Config) -> None:
    """Refuse sections that describe different model inputs; the message names both keys.

    The media sections produce what the model consumes, so their geometry must be the model's
    (:mod:`fv2es.models.geometry`, exposed by :class:`ModelConfig`).
    """
    model, faces, spec = cfg.model, cfg.faces, cfg.spectrogram
    if faces.image_size != model.face_size:
        raise ConfigError(f"faces.image_size ({faces.image_size}) disagrees with the model's face input "
                          f"(model.visual_arch {model.visual_arch!r} takes {model.face_size}x{model.face_size} crops)")
    if cfg.decode.sample_rate != spec.sample_rate:
        raise ConfigError(f"decode.sample_rate ({cfg.decode.sample_rate}) disagrees with "
                          f"spectrogram.sample_rate ({spec.sample_rate}): the spectrogram reads the decoded audio")
    bands = spec.n_mels // spec.piece_frames
    piece = (bands, spec.n_mels // bands, spec.piece_frames)
    if piece != tuple(model.piece_shape):
        raise ConfigError(f"spectrogram.n_mels ({spec.n_mels}) and spectrogram.piece_frames ({spec.piece_frames}) "
                          f"give pieces of shape {piece}, but the audio branch (model.audio_arch "
                          f"{model.audio_arch!r}) takes {tuple(model.piece_shape)}")


def parse_overrides(overrides: Iterable[str]) -> dict[str, Any]:
    """Turn ``["model.trans_dim=32", "train.lr=1e-4"]`` into a nested dict (values parsed as YAML)."""
    nested: dict[str, Any] = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. model.trans_dim=32")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: cannot parse value: {exc}") from exc
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = value
    return nested


def deep_merge(a: dict, b: Mapping) -> dict:
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load a :class:`Config` from a YAML file (optional) and ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, Mapping):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        data = dict(loaded or {})
    overrides = list(overrides)
    data = deep_merge(data, parse_overrides(overrides))
    source = " + ".join(s for s in (str(path) if path else "", "overrides" if overrides else "") if s)
    return config_from_dict(data, source=source)


def config_from_dict(data: Mapping[str, Any], source: str = "") -> Config:
    """Build a :class:`Config`; the model section starts from its preset's values."""
    try:
        model_data = data.get("model") or {}
        preset = model_data.get("preset", ModelConfig.preset) if isinstance(model_data, Mapping) else None
        if not isinstance(preset, str):
            preset = ModelConfig.preset  # from_dict below names the bad value
        base = Config(model=get_preset(preset))
        cfg = from_dict(Config, data, base=base)
        check_architectures(cfg.model)
        return cfg
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}" if source else str(exc)) from None
