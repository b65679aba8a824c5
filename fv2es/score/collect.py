"""Segment rows, arriving in any order, gathered into whole jobs and committed in parts."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from fv2es.failures import OK
from fv2es.score.output import ScoreOutput
from fv2es.score.summary import spans


class VideoCollector:
    """Gathers segment rows (which arrive in any order) until each job (a video, or one speaker or
    audio track of it) is whole, then commits whole jobs in parts of ``part_videos`` (or whatever is ready every ``flush_s`` seconds)."""

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

    def add(self, batch: pa.Table) -> None:
        """Take a batch of scored segment rows; commit a part when enough whole videos are ready."""
        batch = batch.select(self.columns)
        # A job is one video, or one speaker or audio track of it: keyed by its own id.
        keys = batch.column("job_id").to_pylist()
        counts = batch.column("segment_count").to_pylist()
        for key in dict.fromkeys(keys):
            mask = pa.array([k == key for k in keys])
            rows = batch.filter(mask)
            self.pending.setdefault(key, []).append(rows)
            self.seen[key] = self.seen.get(key, 0) + rows.num_rows
            if self.seen[key] == counts[keys.index(key)]:
                self._complete(key)
        if self.ready_videos >= self.part_videos or (self.ready and time.monotonic() - self.last_flush > self.flush_s):
            self.flush()

    def _complete(self, key: str) -> None:
        table = pa.concat_tables(self.pending.pop(key)).sort_by("segment_index")
        del self.seen[key]
        self.ready.append(table)
        self.ready_videos += 1
        self.videos_done += 1
        statuses = table.column("status").to_pylist()
        self.videos_failed += all(s != OK for s in statuses)
        self.segments += table.num_rows
        ok = np.array([s == OK for s in statuses])
        self.seconds += float(np.nansum(spans(table)[ok])) if ok.any() else 0.0

    def flush(self) -> None:
        """Commit every whole video gathered so far, ``part_videos`` videos per part."""
        for i in range(0, len(self.ready), self.part_videos):
            self.output.write_part(pa.concat_tables(self.ready[i : i + self.part_videos]))
        self.ready, self.ready_videos, self.last_flush = [], 0, time.monotonic()

    def incomplete(self) -> dict[str, int]:
        """Jobs (their ids) with rows still missing (empty after a full run: anything else is a bug)."""
        return dict(self.seen)
