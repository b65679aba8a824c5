"""The FV2ES model: branches, fusion, registry and checkpoints."""

from fv2es.models.checkpoint import (
    Checkpoint,
    CheckpointInfo,
    load_checkpoint,
    read_checkpoint_info,
    save_checkpoint,
)
from fv2es.models.fv2es import FV2ES
from fv2es.models.inputs import Collate, ModelInputs, normalize_faces
from fv2es.models.registry import create_model, get_preset, list_models, register_model

__all__ = [
    "FV2ES",
    "Checkpoint",
    "CheckpointInfo",
    "Collate",
    "ModelInputs",
    "create_model",
    "get_preset",
    "list_models",
    "load_checkpoint",
    "normalize_faces",
    "read_checkpoint_info",
    "register_model",
    "save_checkpoint",
]
