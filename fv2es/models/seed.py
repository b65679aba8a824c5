"""The seed authors' checkpoints: read them safely and map their names onto an FV2ES model.

The seed (MultimodalAffectiveComputing/FV2ES, ``V2EM/src/model/``) saves
``torch.save(model.state_dict())`` of its ``MME2E`` module. The paper preset builds the same
network (issue 11), so every tensor has exactly one home here; only names differ:

======================================  =========================================
seed                                    fv2es
======================================  =========================================
``T.albert.*``                          ``text.encoder.*``
``V.0`` / ``V.1`` (stem conv, BN)       ``visual.stem.0`` / ``visual.stem.1``
``V.4 V.5 V.6 V.8 V.10`` (RepVGG)       ``visual.blocks.0 1 2 4 6``
  ``rbr_dense`` / ``rbr_1x1``           ``conv_kxk`` / ``conv_1x1`` (timm's block)
  ``rbr_identity`` / ``rbr_reparam``    ``identity`` / ``reparam_conv``
``A.0.*`` (NesT)                        ``audio.nest.*``
``v_flatten.0 .2``, ``a_flatten.0 .2``  ``visual.proj.1 .3``, ``audio.proj.1 .3``
``v_transformer``, ``a_transformer``    ``visual_temporal``, ``audio_temporal``
``t_out v_out a_out``                   ``heads.t heads.v heads.a``
``weighted_fusion.weight`` (t, v, a)    ``fusion.weight`` (stacked t, v, a as well)
======================================  =========================================

Dropped on purpose: ``mtcnn.*`` (facenet-pytorch's own frozen face detector; our face stage
has its own copy), ``A.0.head.*`` (NesT's ImageNet classifier, which the seed never calls) and
ALBERT's non-persistent buffers (``position_ids``, ``token_type_ids``) that older transformers
saved. Every other key must map, and every fv2es key must be filled, with the same shape; any
difference fails naming each key (the seed's own demo loads with ``strict=False`` and can
silently drop weights; this never does).
"""

from __future__ import annotations

import io
import pickle
import re
from collections.abc import Mapping

import torch

from fv2es.errors import CheckpointError

# seed prefix -> fv2es prefix. The RepVGG blocks' inner names are renamed by BLOCK_PARTS.
PREFIXES = (
    ("T.albert.", "text.encoder."),
    ("V.0.", "visual.stem.0."),
    ("V.1.", "visual.stem.1."),
    ("V.4.", "visual.blocks.0."),
    ("V.5.", "visual.blocks.1."),
    ("V.6.", "visual.blocks.2."),
    ("V.8.", "visual.blocks.4."),
    ("V.10.", "visual.blocks.6."),
    ("A.0.", "audio.nest."),
    ("v_flatten.0.", "visual.proj.1."),
    ("v_flatten.2.", "visual.proj.3."),
    ("a_flatten.0.", "audio.proj.1."),
    ("a_flatten.2.", "audio.proj.3."),
    ("v_transformer.", "visual_temporal."),
    ("a_transformer.", "audio_temporal."),
    ("t_out.", "heads.t."),
    ("v_out.", "heads.v."),
    ("a_out.", "heads.a."),
    ("weighted_fusion.", "fusion."),
)
BLOCK_PARTS = (
    ("rbr_dense.", "conv_kxk."),
    ("rbr_1x1.", "conv_1x1."),
    ("rbr_identity.", "identity."),
    ("rbr_reparam.", "reparam_conv."),
)
# Keys of a seed checkpoint that have no home on purpose (see the module docstring).
DROPPED = re.compile(r"^(mtcnn\.|A\.0\.head\.|T\.albert\.embeddings\.(position_ids|token_type_ids)$)")


def _is_block(ours_prefix: str) -> bool:
    return ours_prefix.startswith("visual.blocks.")


def seed_to_fv2es_name(name: str) -> str | None:
    """The fv2es name of seed key ``name``; None when no rule covers it."""
    for seed_prefix, ours_prefix in PREFIXES:
        if name.startswith(seed_prefix):
            rest = name[len(seed_prefix):]
            if _is_block(ours_prefix):
                for seed_part, ours_part in BLOCK_PARTS:
                    if rest.startswith(seed_part):
                        return ours_prefix + ours_part + rest[len(seed_part):]
                return None
            return ours_prefix + rest
    return None


def fv2es_to_seed_name(name: str) -> str | None:
    """The seed name of fv2es key ``name`` (the inverse of :func:`seed_to_fv2es_name`)."""
    for seed_prefix, ours_prefix in PREFIXES:
        if name.startswith(ours_prefix):
            rest = name[len(ours_prefix):]
            if _is_block(ours_prefix):
                for seed_part, ours_part in BLOCK_PARTS:
                    if rest.startswith(ours_part):
                        return seed_prefix + seed_part + rest[len(ours_part):]
                return None
            return seed_prefix + rest
    return None


def read_seed_state_dict(data: bytes, source: str = "seed checkpoint") -> dict[str, torch.Tensor]:
    """Unpickle a seed checkpoint with ``weights_only=True``: tensors and plain containers only.

    A pickle that needs anything more (classes, functions) is refused: loading it would run code.
    """
    try:
        obj = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        needs = [line.strip() for line in str(exc).splitlines() if "Unsupported global" in line]
        if needs:  # a class or function: unpickling it would import and run code
            raise CheckpointError(
                f"{source}: refused: it needs more than tensors to unpickle, and fv2es loads checkpoints with "
                f"torch.load(weights_only=True) so that reading one never runs code. Re-save it as "
                f"torch.save(model.state_dict()) ({needs[0].split(' was not')[0]})") from None
        raise CheckpointError(f"{source}: not a readable torch checkpoint (a corrupt or foreign pickle)") from None
    except (RuntimeError, EOFError, KeyError, ValueError) as exc:  # torch's errors for a truncated/foreign file
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{source}: not a readable torch checkpoint ({detail})") from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]  # a trainer's wrapper around the state dict
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{source}: expected a state dict (names -> tensors), got {type(obj).__name__}")
    bad = [str(k) for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{source}: entries that are not named tensors: {', '.join(bad[:10])}")
    return dict(obj)


def seed_modalities(state: Mapping[str, torch.Tensor]) -> str:
    """The modalities a seed state dict holds weights for, in the seed's fusion order (t, v, a)."""
    heads = {"t": "t_out.weight", "v": "v_out.weight", "a": "a_out.weight"}
    return "".join(m for m, key in heads.items() if key in state)


def is_folded(state: Mapping[str, torch.Tensor]) -> bool:
    """True when the RepVGG blocks are in the seed's deploy form (``rbr_reparam``)."""
    folded = any(".rbr_reparam." in k for k in state)
    if folded and any(".rbr_dense." in k for k in state):
        raise CheckpointError("seed checkpoint mixes folded (rbr_reparam) and training-form (rbr_dense) RepVGG blocks")
    return folded


def map_seed_state_dict(state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor],
                        source: str = "seed checkpoint") -> dict[str, torch.Tensor]:
    """Rename seed ``state`` to fv2es names and check it fills ``target`` (a model's state dict) exactly.

    Raises :class:`CheckpointError` naming every seed key without a home, every fv2es key left
    unfilled and every shape that differs.
    """
    mapped: dict[str, torch.Tensor] = {}
    seen: set[str] = set()  # fv2es keys some seed key names, fitting or not
    unmatched, misshaped = [], []
    for name, tensor in state.items():
        if DROPPED.match(name):
            continue
        ours = seed_to_fv2es_name(name)
        if ours is None or ours not in target:
            unmatched.append(name)
            continue
        seen.add(ours)
        if tuple(tensor.shape) != tuple(target[ours].shape):
            misshaped.append(f"{name} {tuple(tensor.shape)} -> {ours} expects {tuple(target[ours].shape)}")
            continue
        mapped[ours] = tensor
    missing = [k for k in target if k not in seen]
    problems = []
    if unmatched:
        problems.append(f"{len(unmatched)} key(s) with no place in the model: " + ", ".join(unmatched))
    if missing:
        seed_names = [f"{fv2es_to_seed_name(k) or '?'} (fv2es {k})" for k in missing]
        problems.append(f"{len(missing)} key(s) missing: " + ", ".join(seed_names))
    if misshaped:
        problems.append(f"{len(misshaped)} key(s) of the wrong shape: " + "; ".join(misshaped))
    if problems:
        raise CheckpointError(f"{source} does not fit the seed's network as configured: " + " | ".join(problems))
    return {k: mapped[k].to(target[k].dtype) for k in target}


def to_seed_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An fv2es state dict under the seed's names (for comparing with, or exporting to, the seed)."""
    out = {}
    for name, tensor in state.items():
        seed = fv2es_to_seed_name(name)
        if seed is None:
            raise KeyError(f"no seed name for {name!r}")
        out[seed] = tensor
    return out


# The seed's text encoders (``albert-{size}-v2``); sizes from their published configs. Every other
# field is transformers' AlbertConfig default, which is what these configs hold.
ALBERT_V2 = {
    "albert-base-v2": dict(hidden_size=768, num_attention_heads=12, intermediate_size=3072, num_hidden_layers=12),
    "albert-large-v2": dict(hidden_size=1024, num_attention_heads=16, intermediate_size=4096, num_hidden_layers=24),
    "albert-xlarge-v2": dict(hidden_size=2048, num_attention_heads=16, intermediate_size=8192, num_hidden_layers=24),
}


def text_encoder_config(text_model: str) -> dict:
    """The Hugging Face config (a dict) of ``text_model``, found offline.

    A local folder, fsspec URI or cached name with a ``config.json`` wins; otherwise the seed's
    ALBERT v2 sizes are known without any file.
    """
    from transformers import AlbertConfig, AutoConfig

    from fv2es.models.text import ALBERT_SIZES, resolve_text_model

    try:
        return AutoConfig.from_pretrained(resolve_text_model(text_model), local_files_only=True).to_dict()
    except OSError:
        pass
    name = ALBERT_SIZES.get(text_model, text_model)
    if name in ALBERT_V2:
        return AlbertConfig(**ALBERT_V2[name], embedding_size=128, vocab_size=30000, hidden_act="gelu_new",
                            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0).to_dict()
    raise CheckpointError(
        f"text encoder {text_model!r}: no config.json found offline. Give --text-model a local folder or "
        f"fsspec URI holding the encoder's config.json (and its tokenizer, needed to score), or one of "
        f"{', '.join(ALBERT_V2)}")


def _temporal_sizes(state: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """trans_dim, trans_nlayers and trans_ff_dim read off a temporal encoder's weights."""
    for prefix in ("v_transformer.", "a_transformer."):
        layers = {int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"encoder\.layers\.(\d+)\.", k))}
        if layers:
            return dict(trans_dim=int(state[prefix + "cls_emb.weight"].shape[1]) if prefix + "cls_emb.weight" in state
                        else int(state[prefix + "encoder.layers.0.norm1.weight"].shape[0]),
                        trans_nlayers=max(layers) + 1,
                        trans_ff_dim=int(state[prefix + "encoder.layers.0.linear1.weight"].shape[0]))
    return {}


def import_seed_state_dict(state: Mapping[str, torch.Tensor], *, text_model: str = "albert-base-v2",
                           emotions: tuple[str, ...] | None = None, modalities: str | None = None,
                           trans_nheads: int | None = None, source: str = "seed checkpoint"):
    """Build the paper preset's FV2ES sized like seed ``state`` and load it strictly.

    Modalities default to the heads present; ``emotions`` to IEMOCAP's six (they must match the
    heads' outputs); the temporal encoders' width, depth and feed-forward size are read off the
    weights (their head count cannot be, so it is the paper's 4 unless given). A folded seed
    checkpoint gives a folded (inference-only) model. Returns the model (eval mode).
    """
    import dataclasses

    from fv2es.emotions import IEMOCAP_EMOTIONS
    from fv2es.models.factory import create_model
    from fv2es.models.registry import get_preset

    present = seed_modalities(state)
    if not present:
        raise CheckpointError(f"{source}: no output heads (t_out, v_out, a_out): not a seed MME2E state dict")
    modalities = modalities or present
    outputs = int(state[f"{present[0]}_out.weight"].shape[0])
    emotions = tuple(emotions or IEMOCAP_EMOTIONS)
    if len(emotions) != outputs:
        raise CheckpointError(f"{source}: its heads have {outputs} outputs but {len(emotions)} emotions were "
                              f"given ({', '.join(emotions)}); pass --emotions with {outputs} names in the "
                              f"order the model was trained with")
    paper = get_preset("fv2es_paper")
    config = dataclasses.replace(paper, emotions=emotions, modalities=modalities, text_model=text_model,
                                 trans_nheads=trans_nheads or paper.trans_nheads, **_temporal_sizes(state))
    text_config = text_encoder_config(text_model) if "t" in config.modalities else None
    model = create_model(config, pretrained_text=False, text_config=text_config)
    if is_folded(state):
        model.reparameterize()  # match the seed's deploy layout before loading
    model.load_state_dict(map_seed_state_dict(state, model.state_dict(), source), strict=True)
    return model.eval()
