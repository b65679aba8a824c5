"""The console: jobs report progress and summaries through ``logging`` (logger ``fv2es``).

Library code never prints; the CLI calls :func:`console` once, which sends the ``fv2es`` logger's
INFO messages to standard output as plain lines (a job's progress line, :mod:`fv2es.progress`,
is redrawn in place when standard output is a terminal), and :func:`quiet_ray`, which keeps
Ray's own console chatter (Ray Data's progress bars and execution plans, a core-worker error
line about actor restarts, the local cluster's token notice) out of a normal run; ``--verbose``
brings it back. A program using fv2es as a library configures logging as it likes (or leaves
INFO off).
"""

from __future__ import annotations

import logging
import os
import sys


class _Stdout(logging.StreamHandler):
    """A handler writing to the *current* ``sys.stdout`` (resolved per message: tests swap it).

    A record with ``progress`` set (``"open"`` or ``"end"``) is a progress line: on a terminal it
    overwrites the line before it (``"end"`` closes it with a newline); any other message first
    closes an open progress line.
    """

    def __init__(self):
        super().__init__(sys.stdout)
        self._open = False

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):  # logging.StreamHandler.__init__ assigns it; the property wins
        pass

    def emit(self, record):
        try:
            text, stream = self.format(record), self.stream
            progress = getattr(record, "progress", None)
            if progress and _is_terminal(stream):
                stream.write("\r" + text + "\x1b[K" + ("\n" if progress == "end" else ""))
                self._open = progress != "end"
            else:
                stream.write(("\n" if self._open else "") + text + "\n")
                self._open = False
            stream.flush()
        except Exception:  # logging's contract: a failing handler reports, never raises
            self.handleError(record)


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def console(level: int = logging.INFO) -> None:
    """Print the ``fv2es`` logger's messages at ``level`` and above as plain lines on stdout (once)."""
    logger = logging.getLogger("fv2es")
    logger.setLevel(level)
    if not any(isinstance(h, _Stdout) for h in logger.handlers):
        handler = _Stdout()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)


def live() -> bool:
    """Whether the ``fv2es`` console (:func:`console`) writes to a terminal, so a progress line
    can be redrawn in place."""
    return any(isinstance(h, _Stdout) and _is_terminal(h.stream) for h in logging.getLogger("fv2es").handlers)


class _BelowWarning(logging.Filter):
    """Drops INFO and DEBUG records, and Ray Data's notice that we turned its progress bars off."""

    def filter(self, record):
        return record.levelno >= logging.WARNING and not record.getMessage().startswith("Progress bars disabled")


class _Drop(logging.Filter):
    """Drops every record logged directly to the logger it is attached to."""

    def filter(self, record):
        return False


# Ray's console output that a normal run does not need; --verbose keeps all of it.
_QUIET_LOGGERS = (
    # "Token authentication is enabled for this Ray cluster ...": said of every embedded local Ray
    "ray._private.authentication.authentication_token_setup",
)


def quiet_ray(verbose: bool = False) -> None:
    """Before Ray starts: turn off Ray Data's progress bars and execution-plan lines, keep Ray Data's
    console to warnings and errors (its log file under the Ray session keeps everything), and keep
    the driver's core worker from printing error-level lines about actor restarts (Ray's own
    warning that Ray Data's actor pools have constructor arguments in the object store). With
    ``verbose`` nothing is changed."""
    if verbose:
        return
    # The core worker of this process (and of an embedded local Ray's raylet) logs to stderr from
    # C++; it reads its level once, at start. Only a fatal line is a user's business here; an
    # address or variable set by the user wins.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False
    ctx.print_on_execution_start = False
    # Ray Data's memory detector prints an eight-line warning every 30 s of a long job that an
    # actor "uses 740 MiB but requests 0 B" (true of any model actor): advice for Ray Data's own
    # users, not fv2es's, who cannot act on it. --verbose keeps it.
    ctx.issue_detectors_config.high_memory_detector_config.detection_time_interval_s = -1
    for handler in logging.getLogger("ray.data").handlers:
        # Only Ray Data's own console handler (a plain StreamHandler, or one of Ray's classes): not
        # its log file, and never a handler someone else attached (a host program's, pytest's).
        ours = type(handler) is logging.StreamHandler or type(handler).__module__.startswith("ray.")
        if ours and not any(isinstance(f, _BelowWarning) for f in handler.filters):
            handler.addFilter(_BelowWarning())
    for name in _QUIET_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _Drop) for f in logger.filters):
            logger.addFilter(_Drop())
