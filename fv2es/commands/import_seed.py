"""``fv2es import-seed``: turn the seed authors' ``torch.save(model.state_dict())`` checkpoint into
an ordinary fv2es checkpoint (safetensors) that ``score``, ``evaluate`` and ``train --ckpt`` take.

The file is read with ``torch.load(weights_only=True)`` (no code runs); the mapping and its
strict checks are in :mod:`fv2es.models.seed`.
"""

from __future__ import annotations

import argparse
import logging
import os

log = logging.getLogger("fv2es.import_seed")


def _names(values: list[str] | None) -> tuple[str, ...] | None:
    """``--emotions ang exc`` or ``--emotions ang,exc`` -> ('ang', 'exc')."""
    if not values:
        return None
    return tuple(name for value in values for name in value.split(",") if name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of ``fv2es import-seed``."""
    from fv2es.commands.common import add_storage_arguments

    parser.add_argument("seed", metavar="SEED.pt", help="the seed's checkpoint (local path or fsspec URI)")
    parser.add_argument("--output", "-o", required=True, metavar="MODEL.safetensors",
                        help="where to write the fv2es checkpoint (local path or fsspec URI)")
    parser.add_argument("--text-model", default="albert-base-v2", metavar="NAME_OR_PATH",
                        help="the text encoder it was trained with: its config is stored in the checkpoint, "
                             "its tokenizer is needed to score (HF name in the local cache, folder or fsspec "
                             "URI) [albert-base-v2]")
    parser.add_argument("--emotions", nargs="+", default=None, metavar="NAME",
                        help="output classes in the trained order [IEMOCAP: ang exc fru hap neu sad]; for the "
                             "seed's CMU-MOSEI models: anger disgust fear happy sad surprise")
    parser.add_argument("--modalities", default=None, help="subset of t, a, v [the heads the file holds]")
    parser.add_argument("--trans-nheads", type=int, default=None,
                        help="attention heads of the temporal encoders (not visible in the weights) [4]")
    parser.add_argument("--thresholds", nargs="+", type=float, default=None, metavar="T",
                        help="per-emotion decision thresholds [none stored: 0.5 each]")
    add_storage_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``fv2es import-seed``; returns the exit code."""
    import fsspec

    from fv2es.commands.common import storage_options
    from fv2es.errors import CheckpointError, InputError
    from fv2es.models import save_checkpoint
    from fv2es.models.seed import import_seed_state_dict, is_folded, read_seed_state_dict

    options = storage_options(args)
    try:
        with fsspec.open(args.seed, "rb", **options) as f:
            data = f.read()
    except FileNotFoundError:
        raise InputError(f"seed checkpoint not found: {args.seed}") from None
    source = os.path.basename(args.seed.rstrip("/")) or args.seed
    state = read_seed_state_dict(data, source)
    emotions = _names(args.emotions)
    model = import_seed_state_dict(state, text_model=args.text_model, emotions=emotions,
                                   modalities=args.modalities, trans_nheads=args.trans_nheads, source=source)
    if args.thresholds is not None and len(args.thresholds) != model.config.num_emotions:
        raise CheckpointError(f"--thresholds: give {model.config.num_emotions} values, one per emotion")
    extra = {"source": "seed", "seed_checkpoint": source, "loss": "bce"}
    model_id = save_checkpoint(args.output, model, thresholds=args.thresholds, activation="sigmoid", extra=extra,
                               storage_options=options)
    params = sum(p.numel() for p in model.parameters())
    form = "folded (inference only)" if is_folded(state) else "training form"
    print(f"imported {source}: modalities {model.config.modalities}, emotions {', '.join(model.config.emotions)}, "
          f"{params:,d} parameters, {form}")
    print(f"wrote {args.output} (model id {model_id})")
    if "t" in model.config.modalities:
        _check_tokenizer(args.text_model)
    return 0


def _check_tokenizer(text_model: str) -> None:
    """Say now, not at scoring time, when the tokenizer the checkpoint needs is not available."""
    from fv2es.models.text import TextModelUnavailable, load_tokenizer

    try:
        load_tokenizer(text_model)
    except TextModelUnavailable:
        print(f"note: the tokenizer of {text_model!r} is not available offline here, and scoring needs it: "
              f"pre-populate the Hugging Face cache with {text_model} where you score, or import again with "
              f"--text-model set to a folder or fsspec URI holding the tokenizer (it is stored in the checkpoint).")
