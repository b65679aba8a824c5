"""``fv2es train``: DDP training on Ray Train; accepts every flag of the seed's ``main.py``."""

from __future__ import annotations

import argparse
import sys

from fv2es.commands.common import add_config_arguments, add_storage_arguments, storage_options


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of ``fv2es train``."""
    from fv2es.train.seed_cli import add_seed_arguments

    parser.add_argument("--output", "-o", default="runs", metavar="URI",
                        help="where runs live (any fsspec URI) [runs]; the run is OUTPUT/NAME")
    parser.add_argument("--name", default=None,
                        help="run name; the same output and name again continues a stopped run "
                             "[fv2es-DATASET-MODALITIES-TIME]")
    parser.add_argument("--address", default=None, help="Ray address (default: $RAY_ADDRESS or a local Ray)")
    add_storage_arguments(parser)
    add_config_arguments(parser, default=None)
    add_seed_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Run ``fv2es train``; returns the exit code (2: a problem in what the user gave)."""
    from fv2es.config import load_config
    from fv2es.models.checkpoint import resolve_checkpoint
    from fv2es.shards import ExampleShards
    from fv2es.storage import options_for
    from fv2es.train.evaluate import run_evaluate
    from fv2es.train.job import TrainRequest, run_train, with_dataset_emotions
    from fv2es.train.seed_cli import SeedFlagError, seed_request

    seed = seed_request(args)
    cfg = load_config(args.config, [*seed.overrides, *args.overrides])
    for note in seed.notes:
        print(f"note: {note}", file=sys.stderr)
    if not cfg.data.datapath:
        raise SeedFlagError("no data: give --datapath (or data.datapath=...) pointing at an `fv2es preprocess` output")
    options = storage_options(args) or None
    info = ExampleShards(cfg.data.datapath, options).metadata()
    cfg = with_dataset_emotions(cfg, info)
    seed.check(cfg.model.emotions, cfg.model.modalities)
    if seed.evaluate_only:
        ckpt = resolve_checkpoint(seed.ckpt, options_for(seed.ckpt, options))  # a run folder: its best
        for split, wanted in (("valid", seed.valid_only), ("test", seed.test_only)):
            if wanted:
                run_evaluate(ckpt, cfg.data.datapath, split, options)
        return 0
    req = TrainRequest(cfg.data.datapath, args.output, args.name, options, args.address,
                       seed.ckpt, seed.ckpt_mod)
    run_train(cfg, req)
    return 0
