"""The scoring job's plan on the driver: the planned job tables less the jobs the output holds,
streamed and counted as they pass, so no list of every input is ever made."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class TodoPlan:
    """The tables of ``tables`` (job rows with ``job_id``, :func:`fv2es.pipeline.plan.iter_jobs`)
    without the jobs in ``done`` (:meth:`fv2es.score.output.ScoreOutput.done_ids`), an iterable
    that may be walked once. While it is walked it counts the jobs planned, the jobs left to do
    and the distinct videos (by a 64-bit hash of each job's ``video_uri``: 8 bytes a job, where
    a set of the names would hold every name)."""

    def __init__(self, tables: Iterable[pa.Table], done: pa.Array):
        self.tables, self.done = tables, done
        self.jobs = self.todo = 0
        self._videos: list[np.ndarray] = []
        # The done set as sorted numbers, made once: pc.is_in would hash the whole set again for
        # every table (64 tables of a big manifest against 100k done jobs: seconds).
        numbers = _numbers(done) if len(done) else None
        self._done = None if numbers is None else np.unique(numbers)

    def __iter__(self) -> Iterator[pa.Table]:
        for table in self.tables:
            self.jobs += table.num_rows
            self._videos.append(np.fromiter((hash(v) for v in table.column("video_uri").to_pylist()), np.int64,
                                            count=table.num_rows))
            if len(self.done):
                table = table.filter(pc.invert(self._is_done(table.column("job_id"))))
            self.todo += table.num_rows
            if table.num_rows:
                yield table
        self._videos = [np.unique(np.concatenate(self._videos))] if self._videos else []

    @property
    def inputs(self) -> int:
        """Distinct videos planned so far (all of them once the plan has been walked)."""
        if len(self._videos) > 1:
            self._videos = [np.unique(np.concatenate(self._videos))]
        return len(self._videos[0]) if self._videos else 0

    def _is_done(self, ids: pa.ChunkedArray) -> pa.Array:
        numbers = _numbers(ids) if self._done is not None else None
        if numbers is None:
            return pc.is_in(ids, value_set=self.done)
        at = np.minimum(np.searchsorted(self._done, numbers), len(self._done) - 1)
        return pa.array(self._done[at] == numbers)


def _numbers(ids) -> np.ndarray | None:
    """Job ids (16 hex digits, :func:`fv2es.pipeline.plan.job_id`) as 64-bit numbers; None when
    one is not such an id (an id from elsewhere: compared as text)."""
    if ids.null_count or (len(ids) and not pc.all(pc.match_substring_regex(ids, "^[0-9a-f]{16}$")).as_py()):
        return None
    values = ids.to_pylist()
    return np.fromiter((int(v, 16) for v in values), np.uint64, len(values))
