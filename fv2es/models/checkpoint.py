"""Checkpoints: one safetensors file holding the weights and, in its metadata, everything needed
to rebuild the model (the model config, the form, emotion names, validation thresholds).

safetensors stores tensors only, so loading a checkpoint can never execute code. Files are read
and written through fsspec, so a checkpoint URI may be local, ``s3://``, ``memory://``, ...
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import struct
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import fsspec
import torch
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem
from safetensors.torch import load as load_safetensors
from safetensors.torch import load_file as load_safetensors_file
from safetensors.torch import save as save_safetensors

import fv2es
from fv2es.configlib import from_dict, to_dict
from fv2es.errors import CheckpointError, ConfigError
from fv2es.models.config import ModelConfig

log = logging.getLogger(__name__)

FORMAT = "fv2es-checkpoint/1"
# What a folder given as a checkpoint may hold, in order of preference: a run folder's best
# checkpoint, then the model file of one ``checkpoint_epoch_NNN/`` folder.
FOLDER_FILES = ("best.safetensors", "model.safetensors")
EPOCH_PREFIX = "checkpoint_epoch_"
# A checkpoint's header (the tensor index and the metadata) is read first; one past this is refused.
_HEAD_BYTES, _MAX_HEADER = 64 * 1024, 100 * 1024 * 1024
# How logits become probabilities: per emotion (multi-label, BCE training) or over the emotions
# (single-label, cross-entropy training).
ACTIVATIONS = ("sigmoid", "softmax")
# Which emotions a score's ``predicted`` lists: every one above its threshold (multi-label), or the
# most probable one (a model trained on single-label data: one emotion per utterance).
DECISIONS = ("thresholds", "argmax")


def activation_for_loss(loss: str | None) -> str:
    """The output activation that matches a training loss (``ce`` -> softmax, else sigmoid)."""
    return "softmax" if loss == "ce" else "sigmoid"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode) and what was saved with it."""

    model: torch.nn.Module
    config: ModelConfig
    thresholds: list[float] | None = None  # per-emotion decision thresholds chosen on validation
    extra: dict[str, Any] = field(default_factory=dict)  # metrics, epoch, run config, ...
    model_id: str = ""  # sha256 of the checkpoint bytes (first 16 hex digits)
    activation: str = "sigmoid"  # logits -> probabilities: one of ACTIVATIONS
    decision: str = "thresholds"  # probabilities -> predicted emotions: one of DECISIONS


def default_decision(activation: str) -> str:
    """A softmax model predicts its argmax; a sigmoid one, every emotion above its threshold."""
    return "argmax" if activation == "softmax" else "thresholds"


def save_checkpoint(uri: str, model, *, thresholds=None, activation: str | None = None, decision: str | None = None,
                    extra: dict | None = None, storage_options: dict | None = None) -> str:
    """Write ``model`` (an FV2ES, training or inference form) to ``uri``; returns its model id.

    ``activation`` (one of ``ACTIVATIONS``) defaults to the one of ``extra["loss"]``, else sigmoid;
    ``decision`` (one of ``DECISIONS``) to :func:`default_decision` of the activation.
    """
    activation = activation or activation_for_loss((extra or {}).get("loss"))
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    decision = decision or default_decision(activation)
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {DECISIONS}, got {decision!r}")
    model = getattr(model, "module", model)  # unwrap DDP
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    meta = {
        "format": FORMAT,
        "fv2es_version": fv2es.__version__,
        "model_config": json.dumps(to_dict(model.config)),
        "reparameterized": json.dumps(bool(model.reparameterized)),
        "emotions": json.dumps(list(model.config.emotions)),
        "thresholds": json.dumps(None if thresholds is None else [float(t) for t in thresholds]),
        "activation": activation,
        "decision": decision,
        "extra": json.dumps(extra or {}),
        # The text encoder's Hugging Face config: the model rebuilds from this file alone.
        "text_config": json.dumps(model.text_config() if hasattr(model, "text_config") else None),
    }
    data = save_safetensors(tensors, metadata=meta)
    with fsspec.open(uri, "wb", **(storage_options or {})) as f:
        f.write(data)
    return _model_id(data)


def _model_id(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def _read_header(data: bytes) -> tuple[int, dict]:
    """The safetensors header at the start of ``data``: its length and its JSON (the tensors'
    index, and the metadata under ``__metadata__``); an 8-byte little-endian length comes first."""
    (length,) = struct.unpack("<Q", data[:8])
    return length, json.loads(data[8 : 8 + length])


def _read_metadata(data: bytes) -> dict[str, str]:
    return _read_header(data)[1].get("__metadata__") or {}


@dataclass
class CheckpointInfo:
    """What a checkpoint says about itself, without building the model."""

    config: ModelConfig
    thresholds: list[float] | None
    extra: dict[str, Any]
    model_id: str
    reparameterized: bool
    fv2es_version: str
    text_config: dict | None = None  # the text encoder's Hugging Face config (None: look it up by name)
    activation: str = "sigmoid"  # one of ACTIVATIONS
    decision: str = "thresholds"  # one of DECISIONS


def resolve_checkpoint(uri: str, storage_options: dict | None = None) -> str:
    """The checkpoint file that ``uri`` names: the file itself, or in a folder its
    ``best.safetensors`` (a run folder), else its ``model.safetensors`` (a ``checkpoint_epoch_NNN/``
    folder), else the newest ``checkpoint_epoch_NNN/model.safetensors`` (a run still training).

    A local path comes back absolute: processes that open it later (Ray Train workers) run in other
    working directories. When a folder was given, the file taken is logged. Every reader of
    checkpoints goes through here; the commands call it on the driver, before any Ray work.

    Raises:
        CheckpointError: nothing at ``uri``, or a folder holding no checkpoint.
    """
    from fsspec.core import url_to_fs

    if "://" not in uri:
        uri = os.path.abspath(os.path.expanduser(uri))
    elif uri.split("://", 1)[0] in ("http", "https"):
        return uri  # a URL names a file (e.g. a presigned one); HTTP has no folders to look into
    fs, path = url_to_fs(uri, **(storage_options or {}))
    if fs.isfile(path):
        return uri
    if not fs.isdir(path):
        raise CheckpointError(f"not found: {uri}")  # as the CLI says it of any missing path
    folder = uri.rstrip("/")
    names = {posixpath.basename(p.rstrip("/")) for p in fs.ls(path, detail=False)}
    chosen = next((name for name in FOLDER_FILES if name in names), None)
    why = ""
    if chosen is None:
        epochs = sorted(n for n in names if n.startswith(EPOCH_PREFIX)
                        and fs.isfile(posixpath.join(path, n, "model.safetensors")))
        if not epochs:
            raise CheckpointError(f"{uri}: a folder without a checkpoint (no {' or '.join(FOLDER_FILES)}, "
                                  f"no {EPOCH_PREFIX}NNN/model.safetensors); give the checkpoint file")
        chosen, why = f"{epochs[-1]}/model.safetensors", " (no best.safetensors yet: the newest epoch's)"
    log.info(f"checkpoint: using {folder}/{chosen}{why}")
    return f"{folder}/{chosen}"


def _check_complete(header: dict, header_len: int, size: int, uri: str) -> None:
    """A truncated file (an interrupted copy or upload) fails here, on the driver, in one line,
    rather than when a worker builds the model."""
    end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
    if size != 8 + header_len + end:
        raise CheckpointError(f"{uri}: truncated or corrupt checkpoint ({size:,d} bytes; its header "
                              f"describes {8 + header_len + end:,d}); copy or write it again")


@dataclass
class _Source:
    """Where a checkpoint's tensors are: a local file (memory-mapped when loaded) or its bytes."""

    path: str | None = None
    data: bytes | None = None

    def tensors(self) -> dict[str, torch.Tensor]:
        if self.path is not None:  # memory-mapped: no bytes object, no deserialising copy
            return load_safetensors_file(self.path)
        return load_safetensors(self.data)


def _open(uri: str, storage_options: dict | None) -> tuple[_Source, bytes, int, str]:
    """A checkpoint's source, the start of the file (at least its header), its size and its id.

    A local file is hashed as a stream and never read whole into memory (a paper-model checkpoint
    is ~0.5 GB; the model stage maps it); a remote one is read once."""
    fs, path = url_to_fs(uri, **(storage_options or {}))
    if isinstance(fs, LocalFileSystem):
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
            if len(head) >= 8:  # the whole header, up to _MAX_HEADER (a longer one reads as unreadable)
                need = 8 + min(struct.unpack("<Q", head[:8])[0], _MAX_HEADER)
                head += f.read(max(0, need - len(head)))
            f.seek(0)
            digest = hashlib.sha256()
            while chunk := f.read(1 << 24):
                digest.update(chunk)
        digest = digest.hexdigest()[:16]
        return _Source(path=path), head, os.path.getsize(path), digest
    with fs.open(path, "rb") as f:
        data = f.read()
    return _Source(data=data), data, len(data), _model_id(data)


def _read(uri: str, storage_options: dict | None) -> tuple[_Source, CheckpointInfo]:
    uri = resolve_checkpoint(uri, storage_options)
    source, head, size, model_id = _open(uri, storage_options)
    try:
        length, header = _read_header(head)
        meta = header.get("__metadata__") or {}
    except (struct.error, ValueError, UnicodeDecodeError, AttributeError) as exc:  # AttributeError: not a JSON object
        raise CheckpointError(f"{uri}: not an fv2es checkpoint (unreadable safetensors header: {exc})") from exc
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{uri}: not an fv2es checkpoint (format {meta.get('format')!r}, expected {FORMAT!r})")
    _check_complete(header, length, size, uri)
    try:
        config = from_dict(ModelConfig, json.loads(meta["model_config"]), "model")
    except ConfigError as exc:
        raise CheckpointError(f"{uri}: its model config is not valid for this fv2es version: {exc}") from exc
    # Checkpoints written before the typed field record only the training loss in ``extra``.
    activation = meta.get("activation") or activation_for_loss(json.loads(meta.get("extra", "{}")).get("loss"))
    return source, CheckpointInfo(
        config=config,
        thresholds=json.loads(meta.get("thresholds", "null")),
        extra=json.loads(meta.get("extra", "{}")),
        model_id=model_id,
        reparameterized=json.loads(meta["reparameterized"]),
        fv2es_version=meta.get("fv2es_version", ""),
        text_config=json.loads(meta.get("text_config", "null")),
        activation=activation,
        decision=meta.get("decision") or default_decision(activation),
    )


def read_checkpoint_info(uri: str, storage_options: dict | None = None) -> CheckpointInfo:
    """The config, thresholds, extras and id of the checkpoint at ``uri`` (no model is built)."""
    return _read(uri, storage_options)[1]


def load_checkpoint(uri: str, *, device: str | torch.device = "cpu", inference: bool = True,
                    storage_options: dict | None = None) -> Checkpoint:
    """Rebuild the model saved at ``uri``.

    With ``inference=True`` (the default) the visual branch is folded into its single-branch
    form and the model is put in eval mode; ``inference=False`` keeps the training form (to
    resume training; only possible if it was saved in that form).
    """
    from fv2es.models.factory import create_model

    source, info = _read(uri, storage_options)
    config, saved_folded = info.config, info.reparameterized
    if saved_folded and not inference:
        raise ValueError(f"{uri}: saved in inference form (RepVGG folded); it cannot be trained further")

    with _without_init():  # every parameter is loaded below (strict): a random init would be thrown away
        model = create_model(config, pretrained_text=False, text_config=info.text_config)
    if saved_folded:
        model.reparameterize()  # match the saved parameter layout before loading
    # Copied into the model's own memory, not assigned: a mapped file's pages follow the file, so a
    # checkpoint copied over in place (``cp``, a run's best.safetensors) would change a live model.
    model.load_state_dict(source.tensors(), strict=True)
    if inference:
        model.reparameterize()
        model.eval()
    model.to(device)
    return Checkpoint(model=model, config=config, thresholds=info.thresholds, extra=info.extra,
                      model_id=info.model_id, activation=info.activation, decision=info.decision)


@contextmanager
def _without_init():
    """Within the block, ``torch.nn.init``'s in-place initialisers leave their tensor as it is (the
    layers' own ``reset_parameters`` call them): a model built here holds uninitialised memory
    until a state dict is loaded into it. Only for a model whose every parameter is then loaded."""
    names = [n for n in vars(torch.nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(torch.nn.init, n) for n in names}
    try:
        for n in names:
            setattr(torch.nn.init, n, _unchanged)
        yield
    finally:
        for n, fn in saved.items():
            setattr(torch.nn.init, n, fn)


def _unchanged(tensor, *args, **kwargs):
    return tensor
