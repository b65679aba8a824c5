"""The console: jobs report progress and summaries through ``logging`` (logger ``fv2es``).

Library code never prints; the CLI calls :func:`console` once, which sends the ``fv2es`` logger's
INFO messages to standard output as plain lines. A program using fv2es as a library configures
logging as it likes (or leaves INFO off).
"""

from __future__ import annotations

import logging
import sys


class _Stdout(logging.StreamHandler):
    """A handler writing to the *current* ``sys.stdout`` (resolved per message: tests swap it)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):  # logging.StreamHandler.__init__ assigns it; the property wins
        pass


def console(level: int = logging.INFO) -> None:
    """Print the ``fv2es`` logger's messages at ``level`` and above as plain lines on stdout (once)."""
    logger = logging.getLogger("fv2es")
    logger.setLevel(level)
    if not any(isinstance(h, _Stdout) for h in logger.handlers):
        handler = _Stdout()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
