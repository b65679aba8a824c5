"""``fv2es score``: score a folder, bucket prefix, glob or manifest of videos into Parquet tables."""

from __future__ import annotations

import argparse
import sys

from fv2es.commands.common import (
    add_config_arguments,
    add_storage_arguments,
    config_from_args,
    storage_options,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input", "-i", required=True, metavar="URI",
                        help="a video, a folder or bucket prefix (searched recursively), a glob, or a manifest "
                             "(.csv/.jsonl/.parquet with video_uri[, start, end, text, ...])")
    parser.add_argument("--output", "-o", required=True, metavar="URI",
                        help="output folder (any fsspec URI); rerunning into it resumes")
    parser.add_argument("--checkpoint", default=None, metavar="URI",
                        help="an fv2es checkpoint (.safetensors), or a run or checkpoint_epoch_NNN/ folder; "
                             "without it, the packaged default model (packaged:fer2013-minilm): the FER2013 "
                             "face-expression network on the found faces and zero-shot emotion from the "
                             "transcript with the packaged MiniLM, seven emotions, no voice (README: "
                             "The packaged model)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local Ray)")
    parser.add_argument("--retry-failed", action="store_true",
                        help="also re-score the videos that failed with a transient kind (decoder_crashed, "
                             "unreadable) in an earlier run into this output")
    add_storage_arguments(parser)
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Score ``--input`` into ``--output``. A bad input, config, checkpoint or speech model is a
    :class:`~fv2es.errors.UserError` (the CLI prints it, exit 2); a missing file likewise."""
    from fv2es.models.checkpoint import resolve_checkpoint
    from fv2es.models.packaged import PACKAGED_URI, is_packaged
    from fv2es.score.job import ScoreRequest, run_score
    from fv2es.storage import check_access, options_for

    cfg = config_from_args(args)
    checkpoint = args.checkpoint or PACKAGED_URI  # no --checkpoint: the packaged default model
    if not is_packaged(checkpoint):
        check_access(args.checkpoint, storage_options(args), "checkpoint")  # S3 credentials and bucket, in one line
        # A run folder or checkpoint_epoch_NNN/ folder: its best.safetensors / model.safetensors (said so).
        checkpoint = resolve_checkpoint(args.checkpoint, options_for(args.checkpoint, storage_options(args)))
    req = ScoreRequest(args.input, args.output, checkpoint, storage_options(args), args.address,
                       retry_failed=args.retry_failed)
    try:
        run_score(cfg, req)
    except FileNotFoundError as exc:  # a checkpoint or manifest that is not there
        print(f"fv2es score: {exc}", file=sys.stderr)
        return 2
    return 0
