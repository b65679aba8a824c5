"""Configs are data: frozen dataclasses loaded from YAML and checked.

A run's configuration is one :class:`Config` made of sections (``model``, ``train``, ``data``).
It is built from, in order: the section defaults (the paper's values), the model preset named
by ``model.preset`` (see :mod:`fv2es.models.registry`), a YAML file, and ``key=value`` overrides
from the command line (``model.trans_dim=32``, ``train.lr=1e-4``). Unknown keys and values of
the wrong type or outside their allowed set are refused with a :class:`ConfigError` naming them.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from fv2es.emotions import IEMOCAP_EMOTIONS
from fv2es.media.decode import DecodeConfig
from fv2es.media.faces import FaceConfig
from fv2es.media.spectrogram import SpectrogramConfig


class ConfigError(ValueError):
    """A configuration key or value that cannot be used; the message names it."""


def _choice(*allowed: str) -> dict:
    return {"choices": allowed}


@dataclass(frozen=True)
class ModelConfig:
    """The FV2ES network (MODEL.md). Defaults are the paper configuration."""

    preset: str = "fv2es_paper"  # registry name whose values this section starts from
    emotions: tuple[str, ...] = IEMOCAP_EMOTIONS  # output classes, in logit order
    modalities: str = "tav"  # any non-empty subset of t(ext), a(udio), v(isual)
    text_model: str = "albert-base-v2"  # HF name or local path; "minilm" = the packaged encoder
    text_max_len: int = 100  # tokens kept of each transcript
    trans_dim: int = 64  # width of the per-modality temporal transformers
    trans_nlayers: int = 4  # layers of each temporal transformer
    trans_nheads: int = 4  # attention heads of each temporal transformer
    trans_ff_dim: int = 2048  # feed-forward width inside the temporal transformers (torch default)
    dropout: float = 0.1  # dropout inside the temporal transformers
    visual_channels: tuple[int, ...] = (64, 64, 64, 128, 256, 512)  # stem, then the five RepVGG blocks
    visual_hidden: int = 1024  # hidden width of the per-frame projection (4608 -> this -> trans_dim)
    audio_embed_dims: tuple[int, ...] = (128, 256, 512)  # NesT level widths
    audio_heads: tuple[int, ...] = (4, 8, 16)  # NesT heads per level
    audio_depths: tuple[int, ...] = (2, 2, 20)  # NesT blocks per level
    audio_drop_path: float = 0.1  # NesT stochastic depth (timm's default of 0.5 is for ImageNet)
    audio_hidden: int = 1024  # hidden width of the per-piece projection (32768 -> this -> trans_dim)
    fusion: str = field(default="weighted", metadata=_choice("weighted", "mean"))  # late fusion

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
        _positive(self, "text_max_len", "trans_dim", "trans_nlayers", "trans_nheads", "trans_ff_dim",
                  "visual_hidden", "audio_hidden")
        _unit_interval(self, "dropout", "audio_drop_path")

    @property
    def num_emotions(self) -> int:
        return len(self.emotions)


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
    max_failures: int = 2  # worker failures survived by restoring the last checkpoint

    def __post_init__(self):
        _positive(self, "lr", "epochs", "batch_size", "early_stop", "text_lr_factor", "num_workers", "worker_cpus")
        if self.weight_decay < 0:
            raise ConfigError("train.weight_decay must be >= 0")


@dataclass(frozen=True)
class DataConfig:
    """Where the examples come from and how utterances are sampled."""

    dataset: str = field(default="iemocap", metadata=_choice("iemocap", "mosei", "manifest"))  # corpus kind
    datapath: str = ""  # URI of the raw dataset or of preprocessed shards (any fsspec path)
    split_seed: int = 0  # seed of the random 70/10/20 split
    split_ratios: tuple[float, ...] = (0.7, 0.1, 0.2)  # train/valid/test shares when no lists are given

    def __post_init__(self):
        if len(self.split_ratios) != 3 or abs(sum(self.split_ratios) - 1.0) > 1e-6 or min(self.split_ratios) < 0:
            raise ConfigError(f"data.split_ratios: {self.split_ratios!r} must be 3 shares summing to 1")


VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".flv", ".wmv", ".mpg", ".mpeg",
                    ".ts", ".3gp")


@dataclass(frozen=True)
class ScoreConfig:
    """The scoring job: segments, resources of each stage, output parts."""

    segments: str = field(default="auto", metadata=_choice("auto", "window", "whole"))  # see README
    window_s: float = 10.0  # length of fixed windows (the last one may be shorter)
    max_segment_s: float = 120.0  # a "whole" video longer than this is scored in windows of this length
    chunk_s: float = 60.0  # media seconds decoded per call: bounds a decode task's memory
    decode_cpus: float = 1.0  # CPUs reserved per decode task
    decode_timeout_s: float = 600.0  # per decode call; past it the decoder process is killed
    face_actors: int = 1  # face-crop actors
    face_cpus: float = 0.5  # CPUs reserved per face actor (its torch threads: at least 1)
    face_gpus: float = 0.0  # GPUs per face actor; > 0 runs MTCNN on CUDA
    model_actors: int = 1  # model actors
    model_cpus: float = 0.5  # CPUs reserved per model actor (its torch threads: at least 1)
    model_gpus: float = 0.0  # GPUs per model actor; > 0 runs the model on CUDA (bf16 autocast)
    batch_size: int = 16  # segments per model forward pass
    part_videos: int = 64  # videos per committed output part file
    video_extensions: tuple[str, ...] = VIDEO_EXTENSIONS  # files taken from a folder or prefix

    def __post_init__(self):
        _positive(self, "window_s", "max_segment_s", "chunk_s", "decode_cpus", "decode_timeout_s",
                  "face_actors", "face_cpus", "model_actors", "model_cpus", "batch_size", "part_videos")
        if self.face_gpus < 0 or self.model_gpus < 0:
            raise ConfigError("score.face_gpus and score.model_gpus must be >= 0")


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
    spectrogram: SpectrogramConfig = field(default_factory=SpectrogramConfig)  # mel pieces
    score: ScoreConfig = field(default_factory=ScoreConfig)  # the scoring job

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def digest(self) -> str:
        """A short stable hash of the configuration (for output metadata)."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def _positive(obj, *names: str) -> None:
    section = _section_name(obj)
    for name in names:
        if getattr(obj, name) <= 0:
            raise ConfigError(f"{section}.{name} must be > 0, got {getattr(obj, name)!r}")


def _unit_interval(obj, *names: str) -> None:
    section = _section_name(obj)
    for name in names:
        if not 0.0 <= getattr(obj, name) < 1.0:
            raise ConfigError(f"{section}.{name} must be in [0, 1), got {getattr(obj, name)!r}")


def _section_name(obj) -> str:
    return type(obj).__name__.removesuffix("Config").lower()


def to_dict(obj) -> dict[str, Any]:
    """A plain (YAML/JSON-able) dict of a config dataclass; tuples become lists."""
    out = {}
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = list(value)
        elif hints[f.name] is float and isinstance(value, int):
            value = float(value)  # a default written as 4 * 3600 must hash like the loaded 14400.0
        out[f.name] = value
    return out


def _coerce(value: Any, tp: Any, where: str, choices: tuple[str, ...] | None) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists to tuples."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, choices)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item_tp, *_rest) = typing.get_args(tp)
        return tuple(_coerce(v, item_tp, f"{where}[{i}]", None) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str) and _looks_like_float(value):
            return float(value)  # YAML 1.1 reads "4.5e-6" (no dot) as a string; users mean a number
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        if choices and value not in choices:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(choices)}")
        return value
    raise ConfigError(f"{where}: unsupported type {tp!r}")


def from_dict(cls, data: Mapping[str, Any], where: str = "", base=None):
    """Build dataclass ``cls`` from ``data``, starting from ``base`` (or the defaults).

    Nested dataclass fields are merged key by key, so a YAML file names only what it changes.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = unknown[0]
        near = difflib.get_close_matches(str(key), list(fields), n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        raise ConfigError(f"unknown config key {_join(where, key)!r}{hint}; known: {', '.join(fields)}")
    base = base if base is not None else cls()
    values = {}
    for name, value in data.items():
        tp = hints[name]
        path = _join(where, name)
        if dataclasses.is_dataclass(tp):
            values[name] = from_dict(tp, value or {}, path, getattr(base, name))
        else:
            values[name] = _coerce(value, tp, path, fields[name].metadata.get("choices"))
    try:
        return dataclasses.replace(base, **values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else str(key)


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


def _looks_like_float(raw: str) -> bool:
    try:
        float(raw)
    except ValueError:
        return False
    return raw.strip().lower() not in ("nan", "inf", "-inf", "infinity")


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
    from fv2es.models.registry import get_preset  # the registry imports this module

    try:
        model_data = data.get("model") or {}
        preset = model_data.get("preset", ModelConfig.preset) if isinstance(model_data, Mapping) else None
        if not isinstance(preset, str):
            preset = ModelConfig.preset  # from_dict below names the bad value
        base = Config(model=get_preset(preset))
        return from_dict(Config, data, base=base)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}" if source else str(exc)) from None
