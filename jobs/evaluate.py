"""Ray job entrypoint: `python jobs/evaluate.py ARGS` is `fv2es evaluate ARGS`."""

import sys

from fv2es.cli import main as cli_main


def main(argv=None):
    return cli_main(["evaluate", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
