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
    parser.add_argument("--dataset", required=True, choices=["iemocap", "mosei", "manifest", "iemocap-hcf", "mosei-hcf"],
                        help="iemocap: the raw release folder (Session1..5); mosei: the raw CMU-MOSEI folder; "
                             "manifest: a CSV/JSONL/Parquet file with video_uri, start, end, text, label(s), split; "
                             "iemocap-hcf / mosei-hcf: MESM's processed release (its data folder), imported as shards "
                             "of its hand-crafted features for --model lf_rnn/lf_transformer")
    parser.add_argument("--input", "-i", required=True, metavar="URI", help="dataset root or manifest (any fsspec URI)")
    parser.add_argument("--output", "-o", required=True, metavar="URI", help="where the shards go (replaced if present)")
    parser.add_argument("--labels", metavar="URI", default=None,
                        help="CMU-MOSEI labels: a CSV export or the SDK's .csd file")
    parser.add_argument("--split-dir", metavar="URI", default=None,
                        help="a folder with train_split.txt, valid_split.txt, test_split.txt (MESM's lists); "
                             "default: the manifest's splits, else a seeded random 70/10/20")
    parser.add_argument("--hand-crafted", action="store_true",
                        help="also write the seed's baselines' feature sequences (text 384, audio 88 with F0, "
                             "visual 140 per step; data.hand_crafted=true), which --model lf_rnn/lf_transformer read")
    parser.add_argument("-aft", "--audio-feature-type", type=int, default=0, choices=range(7), metavar="0-6",
                        help="iemocap-hcf: MESM's audio column set, as the seed's -aft [0: all 144]")
    parser.add_argument("--address", default=None, help="Ray address (default: $RAY_ADDRESS or a local Ray)")
    add_storage_arguments(parser)
    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``fv2es preprocess``; returns the exit code (2: a problem in what the user gave)."""
    from fv2es.data.splits import mesm_split_files
    from fv2es.preprocess import PreprocessRequest, run_preprocess

    if args.hand_crafted:  # before the user's own overrides, so data.hand_crafted=false still wins
        args.overrides = ["data.hand_crafted=true", *args.overrides]
    cfg = config_from_args(args)
    options = storage_options(args) or None
    req = PreprocessRequest(args.dataset, args.input, args.output, args.labels,
                            mesm_split_files(args.split_dir) if args.split_dir else None, options, args.address,
                            args.audio_feature_type)
    run_preprocess(cfg, req)
    return 0
