"""Ray job entrypoint: `python jobs/train.py ARGS` is `fv2es train ARGS`."""

import sys

from fv2es.cli import main as cli_main


def main(argv=None):
    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
