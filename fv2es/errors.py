"""Errors a user can fix: caught once by the CLI and printed as one line (exit 2).

Everything else (a bug in fv2es, torch, pyarrow ...) keeps its traceback. Raise a subclass of
:class:`UserError` only for a problem in what the user gave: a config key, an input URI, a file,
a checkpoint, a missing model. The message names the thing and says what to do.
"""

from __future__ import annotations


class UserError(Exception):
    """A problem in what the user gave; the message is shown as is, without a traceback."""


class ConfigError(UserError, ValueError):
    """A configuration key or value that cannot be used; the message names it."""


class InputError(UserError, ValueError):
    """An input URI names nothing usable (no videos, an empty manifest, a missing file)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be read or does not fit (truncated, wrong format, mismatched keys)."""
