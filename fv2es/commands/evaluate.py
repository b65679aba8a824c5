"""``fv2es evaluate``: metrics of a checkpoint on the validation or test split of a preprocess output."""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="URI", help="an fv2es checkpoint")
    parser.add_argument("--data", required=True, metavar="URI", help="an `fv2es preprocess` output")
    parser.add_argument("--split", choices=["valid", "test"], default="test",
                        help="valid: thresholds chosen there; test: the checkpoint's thresholds [test]")
    parser.add_argument("--device", default="cpu", help="torch device [cpu]")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write every metric to this JSON file")


def run(args: argparse.Namespace) -> int:
    from fv2es.train.job import run_evaluate

    try:
        metrics = run_evaluate(args.checkpoint, args.data, args.split, device=args.device)
    except (FileNotFoundError, ValueError) as exc:
        print(f"fv2es evaluate: {exc}", file=sys.stderr)
        return 2
    if args.json:
        with open(args.json, "w") as f:
            json.dump(metrics, f, indent=2)
    return 0
