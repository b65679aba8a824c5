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

    def __iter__(self) -> Iterator[pa.Table]:
        for table in self.tables:
            self.jobs += table.num_rows
            self._videos.append(np.fromiter((hash(v) for v in table.column("video_uri").to_pylist()), np.int64,
                                            count=table.num_rows))
            if len(self.done):
                table = table.filter(pc.invert(pc.is_in(table.column("job_id"), value_set=self.done)))
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
