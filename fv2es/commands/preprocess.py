"""``fv2es preprocess``: a raw dataset -> Parquet example shards for training."""

from __future__ import annotations

import argparse

from fv2es.commands.common import (
    add_config_arguments,
    add_storage_arguments,
    config_from_args,
    storage_options,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of ``fv2es preprocess``."""
    parser.add_argument("--dataset", required=True, choices=["iemocap", "mosei", "manifest"],
                        help="iemocap: the raw release folder (Session1..5); mosei: the raw CMU-MOSEI folder; "
                             "manifest: a CSV/JSONL/Parquet file with video_uri, start, end, text, label(s), split")
    parser.add_argument("--input", "-i", required=True, metavar="URI", help="dataset root or manifest (any fsspec URI)")
    parser.add_argument("--output", "-o", required=True, metavar="URI", help="where the shards go (replaced if present)")
    parser.add_argument("--labels", metavar="URI", default=None,
                        help="CMU-MOSEI labels: a CSV export or the SDK's .csd file")
    parser.add_argument("--split-dir", metavar="URI", default=None,
                        help="a folder with train_split.txt, valid_split.txt, test_split.txt (MESM's lists); "
                             "default: the manifest's splits, else a seeded random 70/10/20")
    parser.add_argument("--address", default=None, help="Ray address (default: $RAY_ADDRESS or a local Ray)")
    add_storage_arguments(parser)
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``fv2es preprocess``; returns the exit code (2: a problem in what the user gave)."""
    from fv2es.data.splits import mesm_split_files
    from fv2es.preprocess import PreprocessRequest, run_preprocess

    cfg = config_from_args(args)
    options = storage_options(args) or None
    req = PreprocessRequest(args.dataset, args.input, args.output, args.labels,
                            mesm_split_files(args.split_dir) if args.split_dir else None, options, args.address)
    run_preprocess(cfg, req)
    return 0
