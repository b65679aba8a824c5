"""One progress line per job: videos (or utterances) done of the total, failures, video-seconds
per wall second and the time left.

A job calls :meth:`Progress.update` as often as it likes; the line goes out through the ``fv2es``
logger, throttled here. On a terminal (the CLI's console, :func:`fv2es.logs.live`) the line is
redrawn in place a few times a second; elsewhere (a log file, ``ray job submit``, a pipe) a plain
line is written when another tenth of the work is done and :data:`PLAIN_EVERY_S` seconds have
passed (and at least every :data:`QUIET_MAX_S` seconds), so a long job leaves a readable trail and
a short one only a few lines.

A job whose rows never reach the driver (preprocessing writes its shards from Ray tasks) counts
them with :meth:`Progress.watch`: a pass-through stage reports each batch to a small counter
actor, which a driver thread polls.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import pyarrow as pa
import pyarrow.compute as pc

from fv2es import logs

log = logging.getLogger(__name__)

LIVE_EVERY_S = 0.5  # redraws of the in-place line
PLAIN_EVERY_S = 20.0  # least time between two plain lines
PLAIN_STEP = 0.1  # ... and least share of the work done between them
QUIET_MAX_S = 60.0  # a plain line at least this often even without progress (the job is alive)


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """The progress line of one job over ``total`` items (``unit``: "videos", "utterances").

    ``update(done, failed, seconds)`` takes running totals: items finished, of which failed, and
    the media seconds they held. ``finish()`` writes the last line (elapsed time instead of ETA).
    ``live`` overrides the terminal check (default: whether the CLI's console is a terminal).
    """

    def __init__(self, label: str, total: int, unit: str = "videos", live: bool | None = None,
                 clock=time.monotonic):
        self.label, self.total, self.unit = label, total, unit
        self.live = logs.live() if live is None else live
        self._clock = clock
        self.started = clock()
        self.done = self.failed = 0
        self.seconds = 0.0
        self._last_at, self._last_done = self.started, 0
        self._finished = False

    def line(self, final: bool = False) -> str:
        """The current line, e.g. ``[score] 12/60 videos, 1 failed, 3.4 video-s/s, ETA 0:14``."""
        elapsed = max(self._clock() - self.started, 1e-9)
        rate = f"{self.seconds / elapsed:.1f} video-s/s"
        if final:
            tail = f"done in {_clock(elapsed)}"
        elif self.done and self.total > self.done:
            tail = f"ETA {_clock(elapsed / self.done * (self.total - self.done))}"
        else:
            tail = "ETA ?"
        return f"[{self.label}] {self.done}/{self.total} {self.unit}, {self.failed} failed, {rate}, {tail}"

    def update(self, done: int, failed: int = 0, seconds: float = 0.0) -> None:
        """Record the running totals; writes the line when it is due."""
        self.done, self.failed, self.seconds = done, failed, seconds
        now = self._clock()
        since = now - self._last_at
        if self.live:
            due = since >= LIVE_EVERY_S
        else:
            step = self.done - self._last_done >= max(1, PLAIN_STEP * self.total)
            due = (since >= PLAIN_EVERY_S and step) or since >= QUIET_MAX_S
        if due and not self._finished and self.done < self.total:  # all done: finish() says so
            self._emit(self.line(), end=False)
            self._last_at, self._last_done = now, self.done

    def finish(self) -> None:
        """Write the final line (once)."""
        if not self._finished:
            self._finished = True
            self._emit(self.line(final=True), end=True)

    def _emit(self, text: str, end: bool) -> None:
        # "progress" tells the console to redraw one line in place on a terminal (see fv2es.logs).
        log.info(text, extra={"progress": "end" if end else "open"} if self.live else None)

    @contextlib.contextmanager
    def watch(self, ds, count=None, poll_s: float | None = None):
        """Count the rows of the Ray Dataset ``ds`` as they pass; yields ``ds`` with a pass-through
        stage added (consume that one). ``count(table) -> (items, failed, seconds)``, by default
        :func:`count_rows`. The final line is written when the block ends without an error."""
        import ray

        counter = ray.remote(num_cpus=0)(_Counter).remote()
        stop = threading.Event()
        poll = poll_s if poll_s is not None else (LIVE_EVERY_S if self.live else 1.0)

        def follow():
            while not stop.wait(poll):
                with contextlib.suppress(ray.exceptions.RayError):
                    self.update(*ray.get(counter.totals.remote(), timeout=30))

        thread = threading.Thread(target=follow, name=f"fv2es-progress-{self.label}", daemon=True)
        thread.start()
        try:
            yield ds.map_batches(_Tap(counter, count or count_rows), batch_format="pyarrow", num_cpus=0)
            stop.set()
            thread.join()
            self.update(*ray.get(counter.totals.remote()))
            self.finish()
        finally:
            stop.set()
            ray.kill(counter)


def count_rows(table: pa.Table) -> tuple[int, int, float]:
    """(rows, rows whose ``status`` is not ``ok``, sum of ``end - start`` in seconds) of a batch."""
    failed = 0
    if "status" in table.column_names:
        failed = table.num_rows - int(pc.sum(pc.equal(table["status"], "ok")).as_py() or 0)
    seconds = 0.0
    if "start" in table.column_names and "end" in table.column_names:
        seconds = float(pc.sum(pc.subtract(table["end"], table["start"])).as_py() or 0.0)
    return table.num_rows, failed, seconds


class _Counter:
    """Running totals, kept by a small actor (no CPU reserved) that the tap stage reports to."""

    def __init__(self):
        self.items, self.failed, self.seconds = 0, 0, 0.0

    def add(self, items: int, failed: int, seconds: float) -> None:
        self.items, self.failed, self.seconds = self.items + items, self.failed + failed, self.seconds + seconds

    def totals(self) -> tuple[int, int, float]:
        return self.items, self.failed, self.seconds


class _Tap:
    """A pass-through stage that reports each batch's counts to the counter actor."""

    def __init__(self, counter, count):
        self.counter, self.count = counter, count

    def __call__(self, batch: pa.Table) -> pa.Table:
        import ray

        ray.get(self.counter.add.remote(*self.count(batch)))  # counted before the batch moves on
        return batch

