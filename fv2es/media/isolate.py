"""Decode in a child process, so that a crashing decoder costs one video, not the job.

FFmpeg is C: on hostile input PyAV has segfaulted, and a segfault in a Ray worker kills every
task that worker was running. :func:`decode_isolated` runs :func:`fv2es.media.decode.decode` in
a persistent child process (one per calling process, started on first use, reused across calls,
restarted after it dies) and turns a dead child into ``decoder_crashed`` rows and an overrun into
``timeout`` rows. Starting the child (an interpreter importing PyAV and numpy) costs about a
quarter of a second, longer than decoding a short clip: one per video would dominate, one per
calling process costs it once. Results come back pickled over a socket (one copy of the frames).
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection

from fv2es.failures import CRASHED, DECODE_ERROR, TIMEOUT, UNREADABLE, MediaError
from fv2es.media.decode import DecodeConfig, Decoded, MediaInfo, decode, failed_rows, probe
from fv2es.storage import redact_text, redact_uri

# The child is a fresh interpreter that runs only this module's loop: not a fork (the caller may
# hold threads, Ray's and gRPC's, whose locks a forked child would inherit locked) and not a
# multiprocessing "spawn" child (which re-runs the caller's __main__ script before serving).
_CHILD_CODE = ("import sys; from fv2es.media.isolate import _worker_main; "
               "_worker_main(int(sys.argv[1]), int(sys.argv[2]))")

DecodeFn = Callable[[str, Sequence[tuple[float, float]] | None, DecodeConfig, dict | None], list[Decoded]]


def decode_isolated(
    uri: str,
    segments: Sequence[tuple[float, float]] | None = None,
    config: DecodeConfig = DecodeConfig(),  # noqa: B008 -- frozen, so a shared default is safe
    storage_options: dict | None = None,
    timeout_s: float = 600.0,
    *,
    decode_fn: DecodeFn = decode,
) -> list[Decoded]:
    """Like :func:`~fv2es.media.decode.decode`, in this process's decoder child process.

    Args:
        uri, segments, config, storage_options: as for ``decode``.
        timeout_s: wall-clock limit for this video; past it the child is killed (and replaced on
            the next call) and every row gets status ``timeout``. Raise it for multi-hour media.
        decode_fn: the function the child runs; a picklable module-level function with
            ``decode``'s signature (tests pass one that crashes or hangs).

    Returns:
        ``decode``'s rows; ``decoder_crashed`` rows when the child died (segfault, OOM kill),
        ``timeout`` rows when it overran. Never raises for a bad input.
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    with _lock:
        ok, payload = _call(decode_fn, (uri, segments, config, storage_options), timeout_s, config.nice)
    return payload if ok else failed_rows(segments, *payload)


def probe_isolated(
    uri: str,
    storage_options: dict | None = None,
    timeout_s: float | None = None,
    *,
    config: DecodeConfig | None = None,
) -> MediaInfo:
    """:func:`~fv2es.media.decode.probe` in this process's decoder child process.

    Args:
        timeout_s: wall-clock limit; ``None`` takes ``config.probe_timeout_s``. Reading a header
            is quick, so a probe that overruns this (much shorter than a decode's limit) is a
            stuck input, and it stops holding the decoder sooner.
        config: limits and timeouts (``DecodeConfig()`` when ``None``).

    Raises:
        MediaError: the input is bad (as ``probe`` raises it), or the child crashed or overran.
    """
    config = config or DecodeConfig()
    timeout_s = config.probe_timeout_s if timeout_s is None else timeout_s
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    with _lock:
        ok, payload = _call(probe, (uri, storage_options, config), timeout_s, config.nice)
    if not ok:
        raise MediaError(*payload)
    return payload


# Failure kinds that may pass on a second try: the decoder child killed from outside (the OOM
# killer, an operator), a read that failed during a network or object-store outage. An input that
# is not there or not ours to read fails the same way every time: not retried.
TRANSIENT_KINDS = (CRASHED, UNREADABLE)
_PERMANENT_CAUSES = ("FileNotFoundError", "PermissionError", "IsADirectoryError", "NotADirectoryError")


def is_transient(kind: str, message: str = "") -> bool:
    """Whether a failure of ``kind`` (with ``message``) is worth retrying (see :data:`TRANSIENT_KINDS`)."""
    if kind == UNREADABLE:  # the message names the cause's type (fv2es.media.decode._open)
        return not any(cause in message for cause in _PERMANENT_CAUSES)
    return kind in TRANSIENT_KINDS


def decode_retrying(uri: str, segments, config: DecodeConfig, storage_options: dict | None, timeout_s: float,
                    retries: int, backoff_s: float, *, decode_fn: DecodeFn = decode) -> list[Decoded]:
    """:func:`decode_isolated`, tried again up to ``retries`` times (after ``backoff_s``, then twice
    that, ...) while every row failed with a transient kind; the last try's rows are returned."""
    for attempt in range(retries + 1):
        rows = decode_isolated(uri, segments, config, storage_options, timeout_s, decode_fn=decode_fn)
        if attempt == retries or not rows or not all(is_transient(r.status, r.error) for r in rows):
            return rows
        time.sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable")


def probe_retrying(uri: str, storage_options: dict | None, config: DecodeConfig, retries: int,
                   backoff_s: float) -> MediaInfo:
    """:func:`probe_isolated`, tried again like :func:`decode_retrying` after a transient failure."""
    for attempt in range(retries + 1):
        try:
            return probe_isolated(uri, storage_options, config=config)
        except MediaError as e:
            if attempt == retries or not is_transient(e.kind, e.message):
                raise
        time.sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable")


def shutdown() -> None:
    """Stop this process's decoder child, if any (it also stops when this process exits)."""
    global _worker
    with _lock:
        if _worker is not None:
            _worker.stop()
            _worker = None


def _worker_main(fd: int, nice: int = 0) -> None:
    """The child's loop: run requests until the parent closes the socket or sends None. ``nice``:
    how much lower than its parent's the child's CPU priority is (``decode.nice``)."""
    if nice > 0:
        os.nice(nice)
    conn = Connection(fd)
    # The parent decides what an interrupt means; a Ctrl-C in a terminal reaches both.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        request_id, fn, args = request
        try:
            reply = (request_id, True, fn(*args))
        except MediaError as e:
            reply = (request_id, False, (e.kind, e.message))
        except Exception as e:  # noqa: BLE001 -- report, keep serving
            reply = (request_id, False, (DECODE_ERROR, redact_text(f"{type(e).__name__}: {e}")))
        conn.send(reply)


class _Worker:
    """One child process and the parent's end of its socket."""

    def __init__(self, nice: int = 0):
        parent_sock, child_sock = socket.socketpair()
        self.nice = nice
        # The child imports decode_fn by module name: give it the modules this process can see.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD_CODE, str(child_sock.fileno()), str(nice)],
            pass_fds=[child_sock.fileno()],
            env=env,
            stdin=subprocess.DEVNULL,
        )
        # Close our copy of the child's end, so the child's death reads as EOF here.
        child_sock.close()
        self.conn = Connection(parent_sock.detach())
        self.owner_pid = os.getpid()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        try:
            self.conn.send(None)
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
        self.proc.wait()
        self.conn.close()

    def death(self) -> str:
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return "stopped answering"
        if code < 0:
            return f"killed by {signal.Signals(-code).name}"
        return f"exit code {code}"


_lock = threading.Lock()
_worker: _Worker | None = None
_request_ids = itertools.count()


def _call(fn, args, timeout_s: float, nice: int = 0):
    """Run ``fn(*args)`` in the child (at ``nice``): ``(True, result)`` or ``(False, (kind, message))``."""
    global _worker
    # A worker made by another process (we were forked) is not ours to use or kill; one started
    # at another niceness is replaced (a process cannot raise its own priority back).
    if _worker is None or _worker.owner_pid != os.getpid() or not _worker.alive() or _worker.nice != nice:
        if _worker is not None and _worker.owner_pid == os.getpid():
            _worker.kill()
        _worker = _Worker(nice)
    worker, uri = _worker, redact_uri(args[0])
    request_id = next(_request_ids)
    try:
        worker.conn.send((request_id, fn, args))
        if not worker.conn.poll(timeout_s):
            worker.kill()
            _worker = None
            return False, (TIMEOUT, f"decoding {uri} took more than {timeout_s:g} s; decoder process killed")
        reply_id, ok, payload = worker.conn.recv()
    except (EOFError, OSError):
        # The socket closed under us: the child died mid-request (segfault, OOM kill).
        reason = worker.death()
        worker.kill()
        _worker = None
        return False, (CRASHED, f"decoder process died ({reason}) while decoding {uri}")
    except BaseException:
        # Interrupted mid-request: the child may still answer later, so it cannot be reused.
        worker.kill()
        _worker = None
        raise
    if reply_id != request_id:  # cannot happen with one request in flight; never trust a stray reply
        worker.kill()
        _worker = None
        return False, (CRASHED, f"decoder process answered request {reply_id}, expected {request_id}")
    return (True, payload) if ok else (False, payload)
