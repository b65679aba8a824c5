"""The FV2ES model: branches, fusion, registry and checkpoints.

Names are imported on first use (PEP 562), so ``fv2es.models.config`` and
``fv2es.models.geometry`` can be read by the config and media modules without importing torch,
timm or transformers.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "FV2ES": "fv2es.models.fv2es",
    "Checkpoint": "fv2es.models.checkpoint",
    "CheckpointInfo": "fv2es.models.checkpoint",
    "load_checkpoint": "fv2es.models.checkpoint",
    "read_checkpoint_info": "fv2es.models.checkpoint",
    "save_checkpoint": "fv2es.models.checkpoint",
    "Collate": "fv2es.models.inputs",
    "ModelInputs": "fv2es.models.inputs",
    "normalize_faces": "fv2es.models.inputs",
    "ModelConfig": "fv2es.models.config",
    "create_model": "fv2es.models.factory",
    "get_preset": "fv2es.models.registry",
    "list_models": "fv2es.models.registry",
    "register_model": "fv2es.models.registry",
    "register_branch": "fv2es.models.registry",
    "list_branches": "fv2es.models.registry",
    "get_branch": "fv2es.models.registry",
    "check_architectures": "fv2es.models.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'fv2es.models' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
