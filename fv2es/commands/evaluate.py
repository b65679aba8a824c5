"""``fv2es evaluate``: metrics of a checkpoint on the validation or test split of a preprocess output."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of ``fv2es evaluate``."""
    parser.add_argument("--checkpoint", required=True, metavar="URI",
                        help="an fv2es checkpoint, or a folder holding one (a run folder: its best.safetensors)")
    parser.add_argument("--data", required=True, metavar="URI", help="an `fv2es preprocess` output")
    parser.add_argument("--split", choices=["valid", "test"], default="test",
                        help="valid: thresholds chosen there; test: the checkpoint's thresholds [test]")
    parser.add_argument("--device", default="cpu", help="torch device [cpu]")
    parser.add_argument("--json", metavar="PATH", default=None, help="also write every metric to this JSON file")


def run(args: argparse.Namespace) -> int:
    """Run ``fv2es evaluate``; returns the exit code (2: a problem in what the user gave)."""
    from fv2es.models.checkpoint import resolve_checkpoint
    from fv2es.train.evaluate import run_evaluate

    metrics = run_evaluate(resolve_checkpoint(args.checkpoint), args.data, args.split, device=args.device)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(metrics, f, indent=2)
    return 0
