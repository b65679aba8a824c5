"""Segment rows, arriving in any order, gathered into whole jobs and committed in parts."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fv2es.failures import OK
from fv2es.score.output import ScoreOutput
from fv2es.score.summary import spans

TIMING = ("decode_ms", "asr_ms", "face_ms", "model_ms")  # averaged over this run's segments for the log


class VideoCollector:
    """Gathers segment rows (which arrive in any order) until each job (a video, or one speaker or
    audio track of it) is whole, then commits whole jobs in parts of ``part_videos`` (or whatever
    is ready every ``flush_s`` seconds). It holds only the jobs not yet committed, and keeps this
    run's counts and per-segment timing sums for the job's log."""

    def __init__(self, output: ScoreOutput, columns: list[str], part_videos: int, flush_s: float = 30.0):
        self.output, self.columns = output, columns
        self.part_videos, self.flush_s = part_videos, flush_s
        self.pending: dict[str, list[pa.Table]] = {}
        self.seen: dict[str, int] = {}
        self.ready: list[pa.Table] = []
        self.ready_videos = 0
        self.last_flush = time.monotonic()
        self.videos_done = self.videos_failed = self.segments = 0
        self.seconds = 0.0
        self._timing = {c: [0.0, 0] for c in TIMING if c in columns}

    def add(self, batch: pa.Table) -> None:
        """Take a batch of scored segment rows; commit a part when enough whole videos are ready."""
        batch = batch.select(self.columns)
        for c, total in self._timing.items():
            values = batch.column(c)
            total[0] += float(pc.sum(values).as_py() or 0.0)
            total[1] += len(values) - values.null_count
        # A job is one video, or one speaker or audio track of it: keyed by its own id. The batch
        # is ordered by job (first appearance) and segment, so each job's rows are a slice of it.
        keys = batch.column("job_id")
        distinct = pc.unique(keys)
        which = pc.index_in(keys, value_set=distinct).to_numpy(zero_copy_only=False)
        order = np.lexsort((batch.column("segment_index").to_numpy(zero_copy_only=False), which))
        batch, which = batch.take(pa.array(order)), which[order]
        counts = np.bincount(which, minlength=len(distinct))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        expected = batch.column("segment_count").to_numpy(zero_copy_only=False)[starts]
        whole = counts == expected  # a job whose rows all came in this batch
        for j, key in enumerate(distinct.to_pylist()):
            rows = batch.slice(starts[j], counts[j])
            if whole[j] and key not in self.seen:
                self.ready.append(rows)
                continue
            whole[j] = False
            self.pending.setdefault(key, []).append(rows)
            self.seen[key] = self.seen.get(key, 0) + int(counts[j])
            if self.seen[key] == expected[j]:
                self._complete(key)
        self._count(batch.filter(pa.array(np.repeat(whole, counts))), int(whole.sum()))
        if self.ready_videos >= self.part_videos or (self.ready and time.monotonic() - self.last_flush > self.flush_s):
            self.flush()

    def _complete(self, key: str) -> None:
        table = pa.concat_tables(self.pending.pop(key)).sort_by("segment_index")
        del self.seen[key]
        self.ready.append(table)
        self._count(table, 1)

    def _count(self, rows: pa.Table, jobs: int) -> None:
        """Count ``jobs`` whole jobs (``rows``: theirs, each job's together) as done."""
        if not jobs:
            return
        ok = pc.fill_null(pc.equal(rows.column("status"), OK), False).to_numpy(zero_copy_only=False)
        ids = rows.column("job_id")
        first = np.flatnonzero(np.concatenate([[True], pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))
                                               .to_numpy(zero_copy_only=False)])) if len(ids) > 1 else np.array([0])
        self.ready_videos += jobs
        self.videos_done += jobs
        self.videos_failed += int((np.add.reduceat(ok.astype(np.int64), first) == 0).sum())
        self.segments += rows.num_rows
        self.seconds += float(np.nansum(spans(rows)[ok])) if ok.any() else 0.0

    def flush(self) -> None:
        """Commit every whole video gathered so far, ``part_videos`` videos per part."""
        for i in range(0, len(self.ready), self.part_videos):
            self.output.write_part(pa.concat_tables(self.ready[i : i + self.part_videos]))
        self.ready, self.ready_videos, self.last_flush = [], 0, time.monotonic()

    def incomplete(self) -> dict[str, int]:
        """Jobs (their ids) with rows still missing (empty after a full run: anything else is a bug)."""
        return dict(self.seen)

    def mean_timing(self, column: str) -> float:
        """The mean of a ``*_ms`` column over this run's segments (0 without any)."""
        total, n = self._timing.get(column, (0.0, 0))
        return total / n if n else 0.0
