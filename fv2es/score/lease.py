"""One writer per output: an exclusive lease file, ``_LEASE``, in the output folder.

A run creates the lease before it touches anything else in the output and removes it at the end
(success or failure). The lease names its holder (a random id), host, pid, start time and last
heartbeat; a thread rewrites the heartbeat every ``ttl_s / 4`` seconds. A second run that finds a
lease fails at once, naming the holder, unless the lease is *stale*: its holder's pid is gone on
this same host, or its heartbeat is older than ``ttl_s`` (a run on another host that died, or
whose host did). A stale lease is taken over with a compare-and-swap, so of two runs taking
over the same stale lease exactly one wins.

How the exclusive create and the compare-and-swap are made atomic depends on the store:

* local disk: ``O_CREAT | O_EXCL`` creates; a takeover holds a side file created with ``O_EXCL``,
  checks that the lease is still the stale one it judged (by content) and replaces it in one step;
* S3 (and S3-compatible stores that implement conditional writes, as AWS S3 does since 2024 and
  MinIO does): ``PutObject`` with ``If-None-Match: *`` creates, ``If-Match: <etag>`` replaces;
* any other fsspec store: check-then-write, which leaves a window of a request's latency in which
  two runs started at the same moment can both proceed (documented in the README).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import posixpath
import socket
import threading
import time
import uuid

from fv2es.errors import UserError
from fv2es.storage import StorageError, redact_uri

LEASE = "_LEASE"
log = logging.getLogger(__name__)


class LeaseHeld(UserError):
    """Another run holds the output's lease."""


class LeaseLost(UserError):
    """This run's lease was taken over (its heartbeat stalled past the TTL); it must stop writing."""


def _precondition_failed(exc: BaseException) -> bool:
    cause = exc.__cause__ or exc
    code = getattr(cause, "response", {}).get("Error", {}).get("Code", "")
    return code in ("PreconditionFailed", "412", "ConditionalRequestConflict")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class OutputLease:
    """The lease on one output folder (``fs`` an fsspec filesystem, ``root`` the folder's path).

    Use as a context manager, or :meth:`acquire` and :meth:`release`. ``uri`` is for messages.
    """

    def __init__(self, fs, root: str, uri: str, ttl_s: float = 120.0):
        self.fs, self.uri, self.ttl_s = fs, uri, ttl_s
        self.path = posixpath.join(root, LEASE)
        self.holder = uuid.uuid4().hex[:12]
        self.host, self.pid = socket.gethostname(), os.getpid()
        self.started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        self.kind = "local" if "file" in _protocols(fs) else "s3" if "s3" in _protocols(fs) else "other"
        self._etag: str | None = None  # S3: the ETag of our last write
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost: str | None = None  # why the lease was lost (then every commit is refused)

    # ---- the record -------------------------------------------------------------------------
    def _record(self) -> bytes:
        return json.dumps({"holder": self.holder, "host": self.host, "pid": self.pid, "started": self.started,
                           "heartbeat": time.time(), "ttl_s": self.ttl_s}).encode()

    def describe(self, record: dict) -> str:
        """The holder of ``record`` in words (for the one-line refusal)."""
        age = time.time() - float(record.get("heartbeat", 0))
        return (f"run {record.get('holder', '?')} on host {record.get('host', '?')} (pid {record.get('pid', '?')}, "
                f"started {record.get('started', '?')}, last heartbeat {age:.0f} s ago)")

    def _stale(self, record: dict) -> str:
        """Why ``record``'s holder is gone ("" when it may still be running)."""
        if record.get("host") == self.host and isinstance(record.get("pid"), int) and not _alive(record["pid"]):
            return f"its process {record['pid']} on this host is gone"
        age = time.time() - float(record.get("heartbeat", 0))
        if age > float(record.get("ttl_s", self.ttl_s)):
            return f"no heartbeat for {age:.0f} s"
        return ""

    def _unwritable(self, why: str) -> StorageError:
        return StorageError(f"output {redact_uri(self.uri)} cannot be written ({why}); "
                            f"choose an output folder you can write to")

    # ---- store primitives -------------------------------------------------------------------
    def _create(self, data: bytes) -> bool:
        """Create the lease if there is none; False when one exists."""
        if self.kind == "local":
            try:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if os.path.isdir(os.path.dirname(self.path)):
                    return False
                raise self._unwritable("a file is in the way") from None
            except OSError as e:  # permission denied, read-only file system, a file where a folder should be
                raise self._unwritable(e.strerror or type(e).__name__) from None
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return True
        if self.kind == "s3":
            bucket, key, _ = self.fs.split_path(self.path)
            try:
                self._etag = self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")["ETag"]
            except PermissionError:
                raise self._unwritable("access denied") from None
            except (FileExistsError, OSError) as e:
                if isinstance(e, FileExistsError) or _precondition_failed(e):
                    return False
                raise
            return True
        if self.fs.exists(self.path):  # check-then-write: not atomic (see the module docstring)
            return False
        self.fs.pipe_file(self.path, data)
        return True

    def _read(self) -> tuple[dict | None, str | None]:
        """The lease's record and its version (S3 ETag / local content digest), or (None, None) when absent."""
        try:
            if self.kind == "local":
                with open(self.path, "rb") as f:
                    data = f.read()
                # The version is the content (holder id + heartbeat), not the inode: a file system
                # reuses a freed inode number at once, so a new lease can carry the stale one's.
                return json.loads(data or b"{}"), hashlib.sha256(data).hexdigest()
            if self.kind == "s3":
                self.fs.invalidate_cache(self.path)
                info = self.fs.info(self.path)
                return json.loads(self.fs.cat_file(self.path) or b"{}"), info.get("ETag")
            return json.loads(self.fs.cat_file(self.path) or b"{}"), None
        except FileNotFoundError:
            return None, None
        except json.JSONDecodeError:  # a torn write of a crashed holder: judge by age alone
            return {}, None

    def _replace(self, version: str | None, data: bytes) -> bool:
        """Overwrite the lease only if it is still at ``version``; False when it changed."""
        if self.kind == "local":
            # Takers serialise on a side file created with O_EXCL; the one holding it replaces the
            # lease in one step (os.replace) if it is still what it judged stale, so there is never
            # a moment without a lease for a third run to create.
            lock = f"{self.path}.takeover"
            try:
                os.close(os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                try:  # a taker that died mid-takeover leaves its side file: old ones are cleared
                    if time.time() - os.stat(lock).st_mtime > self.ttl_s:
                        os.remove(lock)
                except FileNotFoundError:
                    pass
                return False
            try:
                if self._read()[1] != version:
                    return False
                tmp = f"{self.path}.{self.holder}.tmp"
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, self.path)
                return True
            finally:
                os.remove(lock)
        if self.kind == "s3":
            bucket, key, _ = self.fs.split_path(self.path)
            try:
                self._etag = self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, IfMatch=version)["ETag"]
            except (FileNotFoundError, OSError) as e:
                if isinstance(e, FileNotFoundError) or _precondition_failed(e):
                    return False
                raise
            return True
        self.fs.pipe_file(self.path, data)
        return True

    # ---- the protocol -----------------------------------------------------------------------
    def acquire(self) -> None:
        """Take the lease, or raise :class:`LeaseHeld` naming the live holder."""
        for _ in range(3):
            if self._create(self._record()):
                break
            record, version = self._read()
            if record is None:
                continue  # released between our create and read: try again
            why = self._stale(record)
            if not why:
                raise LeaseHeld(f"output {redact_uri(self.uri)} is in use by {self.describe(record)}; "
                                f"wait for it to finish or stop it (a lease is stale after {self.ttl_s:g} s "
                                f"without a heartbeat), or choose another --output")
            if self._replace(version, self._record()):
                log.warning(f"took over the lease on {redact_uri(self.uri)} from {self.describe(record)}: {why}")
                break
        else:
            raise LeaseHeld(f"output {redact_uri(self.uri)}: could not take its lease (other runs keep taking it)")
        self._thread = threading.Thread(target=self._beat, name="fv2es-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl_s / 4):
            try:
                self._refresh()
            except OSError as e:  # a store outage: keep trying; the TTL gives slack
                log.warning(f"lease heartbeat on {redact_uri(self.uri)} failed: {type(e).__name__}; retrying")
            if self.lost:
                return

    def _refresh(self) -> None:
        """Rewrite the heartbeat, if the lease is still ours (else note that it was lost)."""
        record, _ = self._read()
        if not record or record.get("holder") != self.holder:
            self.lost = f"the lease is now held by {self.describe(record or {})}"
            return
        if self.kind == "local":  # replaced in one step: there is never a moment without a lease
            tmp = f"{self.path}.{self.holder}.tmp"
            with open(tmp, "wb") as f:
                f.write(self._record())
            os.replace(tmp, self.path)
        elif self.kind == "s3":
            if not self._replace(self._etag, self._record()):
                self.lost = "the lease changed under this run"
        else:
            self.fs.pipe_file(self.path, self._record())

    def check(self) -> None:
        """Raise :class:`LeaseLost` if another run took the lease (called before each commit)."""
        if self.lost:
            raise LeaseLost(f"output {redact_uri(self.uri)}: this run lost its lease ({self.lost}); stopped "
                            f"without writing more; the other run owns the output now")

    def release(self) -> None:
        """Stop the heartbeat and remove the lease if it is still ours."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            record, _ = self._read()
            if not record or record.get("holder") != self.holder:
                return
            if self.kind == "s3":  # only if it is still our write (a conditional delete)
                bucket, key, _ = self.fs.split_path(self.path)
                self.fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=self._etag)
            else:
                self.fs.rm_file(self.path)
        except OSError as e:  # the next run sees a lease of a dead process and takes it over
            log.warning(f"could not remove the lease on {redact_uri(self.uri)}: {type(e).__name__}: {e}")

    def __enter__(self) -> OutputLease:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _protocols(fs) -> tuple[str, ...]:
    protocol = fs.protocol
    return (protocol,) if isinstance(protocol, str) else tuple(protocol)
