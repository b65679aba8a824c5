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
    parser.add_argument("--checkpoint", required=True, metavar="URI", help="an fv2es checkpoint (.safetensors)")
    parser.add_argument("--address", default=None,
                        help="Ray cluster address (default: $RAY_ADDRESS, else an embedded local Ray)")
    add_storage_arguments(parser)
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Score ``--input`` into ``--output``. A bad input, config, checkpoint or speech model is a
    :class:`~fv2es.errors.UserError` (the CLI prints it, exit 2); a missing file likewise."""
    from fv2es.score.job import ScoreRequest, run_score

    cfg = config_from_args(args)
    req = ScoreRequest(args.input, args.output, args.checkpoint, storage_options(args), args.address)
    try:
        run_score(cfg, req)
    except FileNotFoundError as exc:  # a checkpoint or manifest that is not there
        print(f"fv2es score: {exc}", file=sys.stderr)
        return 2
    return 0
