"""The ``fv2es`` console script: one command, a subcommand per job.

``python jobs/<name>.py ARGS`` is the same as ``fv2es <name> ARGS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import fv2es
from fv2es.config import ConfigError

# name -> (module under fv2es.commands, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "preprocess": ("preprocess", "turn a raw dataset (IEMOCAP, CMU-MOSEI, a manifest) into Parquet example shards"),
    "train": ("train", "train FV2ES with Ray Train (DDP); accepts the seed's main.py flags"),
    "evaluate": ("evaluate", "evaluate a checkpoint on the validation or test split"),
    "score": ("score", "score a folder, bucket or manifest of videos into Parquet emotion tables"),
    "demo-corpus": ("demo_corpus", "generate a small labelled corpus of talking-face clips (for demos and tests)"),
    "demo": ("demo", "the whole system end to end on a demo corpus: generate, preprocess, train, score, report"),
    "report": ("report", "write an HTML report (charts and tables) of a scoring output and/or a training run"),
    "model": ("model_info", "build a model from a config, print its parameter counts and time one forward pass"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fv2es",
        description="FV2ES: end-to-end multimodal (text + face + voice) video emotion recognition on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"fv2es {fv2es.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        importlib.import_module(f"fv2es.commands.{module}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    module, _ = COMMANDS[args.command]
    try:
        return importlib.import_module(f"fv2es.commands.{module}").run(args)
    except ConfigError as exc:
        print(f"fv2es {args.command}: config error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
