"""The ``fv2es`` console script: one command, a subcommand per job.

``python jobs/<name>.py ARGS`` is the same as ``fv2es <name> ARGS``.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import sys

import fv2es
from fv2es.errors import ConfigError, UserError
from fv2es.logs import console, quiet_ray
from fv2es.storage import redact_text

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
    "import-seed": ("import_seed", "convert the seed authors' released checkpoint (.pt) into an fv2es checkpoint"),
}
VERBOSE_HELP = "show Ray's own console output too (Ray Data's progress bars and execution plans, core-worker logs)"
USES_RAY = {"preprocess", "train", "score", "demo"}  # the commands that start or join a Ray cluster


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fv2es",
        allow_abbrev=False,  # "--epoch" must not silently mean "--epochs"
        description="FV2ES: end-to-end multimodal (text + face + voice) video emotion recognition on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"fv2es {fv2es.__version__}")
    parser.add_argument("--verbose", action="store_true", help=VERBOSE_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        importlib.import_module(f"fv2es.commands.{module}").add_arguments(p)
        # also after the command (`fv2es demo --verbose`); SUPPRESS keeps a --verbose given before it
        p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=VERBOSE_HELP)
    return parser



def _refuse_unknown_flags(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """Name a mistyped ``--flag`` before argparse complains about a missing required one.

    argparse checks required options before unknown ones, so ``--inptu x`` would read as
    "required: --input"; this says what is wrong and suggests the flag meant.
    """
    sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
    command = next((t for t in argv if not t.startswith("-")), None)
    if sub is None or command not in sub.choices:
        return
    known = sub.choices[command]._option_string_actions
    for token in argv[argv.index(command) + 1:]:
        if token == "--":
            return
        flag = token.split("=", 1)[0]
        if flag.startswith("--") and flag not in known:
            near = difflib.get_close_matches(flag, [k for k in known if k.startswith("--")], n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            sub.choices[command].error(f"unknown option {flag}{hint}")


_PATH_ERRORS = {FileNotFoundError: "not found", IsADirectoryError: "is a folder, expected a file",
                NotADirectoryError: "not a folder", PermissionError: "permission denied"}


def _path_error(exc: OSError) -> str:
    """``"<what>: <path>"`` for an OS error about a path (fsspec raises some with only the path)."""
    if exc.strerror and exc.filename:
        return f"{exc.strerror.lower()}: {exc.filename}"
    return f"{_PATH_ERRORS.get(type(exc), 'cannot use')}: {exc}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    _refuse_unknown_flags(parser, argv)
    args = parser.parse_args(argv)
    console()  # the jobs' progress and summaries (logger "fv2es") as plain lines on stdout
    if args.command in USES_RAY:
        quiet_ray(verbose=args.verbose)  # before Ray starts: Ray's own chatter only with --verbose
    module, _ = COMMANDS[args.command]
    try:
        return importlib.import_module(f"fv2es.commands.{module}").run(args)
    except UserError as exc:
        # One line, no traceback; URIs in it lose their credentials (userinfo, presigned queries).
        kind = "config error: " if isinstance(exc, ConfigError) else ""
        message = " ".join(str(exc).split("\n"))
        print(f"fv2es {args.command}: {kind}{redact_text(message)}", file=sys.stderr)
        return 2
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError) as exc:
        # A path the user named that is missing or not writable: one line, what and where.
        print(f"fv2es {args.command}: {redact_text(_path_error(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
