"""``fv2es report``: an HTML page of charts from a scoring output and/or a training run."""

from __future__ import annotations

import argparse
import sys

from fv2es.commands.common import add_storage_arguments, storage_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of ``fv2es report``."""
    parser.add_argument("--scores", default=None, metavar="URI",
                        help="an `fv2es score` output (segments/, videos.parquet, _SUCCESS); any fsspec URI")
    parser.add_argument("--run", default=None, metavar="URI",
                        help="an `fv2es train` run folder (metrics.jsonl, best.safetensors)")
    parser.add_argument("--data", default=None, metavar="URI",
                        help="the run's `fv2es preprocess` output: adds the test confusion matrix of best.safetensors")
    parser.add_argument("--labels", default=None, metavar="URI",
                        help="a manifest with the scored videos' true labels (CSV / JSONL / Parquet with video_uri "
                             "and label or labels): adds a true-label column")
    parser.add_argument("--sort-by", default=None, metavar="COLUMN",
                        help="a column of the output's videos.parquet (e.g. prob_sad, scored_seconds): the videos "
                             "with the largest values are drawn and listed first (default: by name)")
    parser.add_argument("--top", type=int, default=None, metavar="N",
                        help="how many videos get an emotion timeline (default and at most 12; the videos table "
                             "lists at most 1,000 and names the Parquet file with every one)")
    parser.add_argument("--output", "-o", required=True, metavar="DIR",
                        help="local folder for index.html and its PNGs")
    add_storage_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``fv2es report``; returns the exit code (2: a problem in what the user gave)."""
    from fv2es.report import write_report

    if not args.scores and not args.run:
        print("fv2es report: give --scores and/or --run", file=sys.stderr)
        return 2
    for flag, needs, value in (("--data", "--run", args.run), ("--labels", "--scores", args.scores),
                               ("--sort-by", "--scores", args.scores), ("--top", "--scores", args.scores)):
        if getattr(args, flag[2:].replace("-", "_")) is not None and not value:
            print(f"fv2es report: {flag} needs {needs}", file=sys.stderr)
            return 2
    if args.top is not None and args.top < 1:
        print("fv2es report: --top must be at least 1", file=sys.stderr)
        return 2
    from fv2es.report import MAX_TIMELINES

    index = write_report(args.output, scores_uri=args.scores, run_uri=args.run, data_uri=args.data,
                         storage_options=storage_options(args), labels_uri=args.labels, sort_by=args.sort_by,
                         top=MAX_TIMELINES if args.top is None else args.top)
    print(f"wrote {index}")
    return 0
