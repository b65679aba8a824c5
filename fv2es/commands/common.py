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


def add_storage_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--endpoint-url", default=None, metavar="URL",
                        help="S3-compatible endpoint for s3:// URIs (credentials: the usual AWS variables)")
    parser.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE",
                        help="extra fsspec storage option for remote URIs (repeatable), e.g. anon=true")


def storage_options(args: argparse.Namespace) -> dict:
    """fsspec storage options for remote URIs from ``--endpoint-url`` and ``--storage-option``."""
    import yaml

    options: dict = {}
    if args.endpoint_url:
        options["client_kwargs"] = {"endpoint_url": args.endpoint_url}
    for item in args.storage_option:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--storage-option {item!r}: expected KEY=VALUE")
        options[key] = yaml.safe_load(value)
    return options
