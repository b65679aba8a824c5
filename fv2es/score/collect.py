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
        # A job is one video, or one speaker or audio track of it: keyed by its own id.
        keys = batch.column("job_id")
        for key in pc.unique(keys).to_pylist():
            rows = batch.filter(pc.equal(keys, key))
            self.pending.setdefault(key, []).append(rows)
            self.seen[key] = self.seen.get(key, 0) + rows.num_rows
            if self.seen[key] == rows.column("segment_count")[0].as_py():
                self._complete(key)
        if self.ready_videos >= self.part_videos or (self.ready and time.monotonic() - self.last_flush > self.flush_s):
            self.flush()

    def _complete(self, key: str) -> None:
        table = pa.concat_tables(self.pending.pop(key)).sort_by("segment_index")
        del self.seen[key]
        self.ready.append(table)
        self.ready_videos += 1
        self.videos_done += 1
        ok = pc.fill_null(pc.equal(table.column("status"), OK), False).to_numpy(zero_copy_only=False)
        self.videos_failed += not ok.any()
        self.segments += table.num_rows
        self.seconds += float(np.nansum(spans(table)[ok])) if ok.any() else 0.0

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
