"""Options shared by subcommands: the config file and KEY=VALUE overrides."""

from __future__ import annotations

import argparse

from fv2es.config import Config, load_config


def add_config_arguments(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument(
        "--config", "-c", default=default, metavar="YAML",
        help=f"experiment config (YAML, see configs/){' [default: ' + default + ']' if default else ''}",
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE",
        help="config overrides, e.g. model.trans_dim=32 train.lr=1e-4",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    return load_config(args.config, args.overrides)
