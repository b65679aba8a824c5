"""Segment numbering: the one place a segment gets its ``segment_index`` and ``segment_count``.

A job (a video, or one speaker or audio track of it) reaches the driver as rows from several
decode chunks, in any order, and the number of rows a chunk yields is known only after the
stages that cut it (the transcription stage cuts a chunk at its speech). So the stages say only
where a row came from, and :class:`SegmentNumbering` numbers a job once all of it is in:

- ``chunk_index`` / ``chunk_count``: which of the job's decode chunks the row belongs to, of how
  many (the decode stage knows: it plans them);
- ``chunk_row`` / ``chunk_rows``: the row's place in its chunk, of how many rows that chunk
  yields (the decode stage for segments it planned; the transcription stage for a chunk it cuts).

A job is whole when every chunk is in with all its rows; its rows are then ordered by
``(chunk_index, chunk_row)`` and numbered 0..n-1 over the job, ``segment_count`` = n.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PROVENANCE = ("chunk_index", "chunk_count", "chunk_row", "chunk_rows")


class SegmentNumbering:
    """Holds each job's rows until the job is whole, then numbers its segments over the job.

    ``add`` takes a batch of rows of any jobs (columns ``job_id`` and :data:`PROVENANCE`) and
    returns the jobs it completed, one table each, with ``segment_index`` and ``segment_count``
    appended and the provenance columns dropped.
    """

    def __init__(self):
        self.pending: dict[str, list[pa.Table]] = {}
        self._rows: dict[str, int] = {}

    def add(self, batch: pa.Table) -> list[pa.Table]:
        """The jobs of ``batch`` that are now whole, numbered (a job's rows may span many batches)."""
        if batch.num_rows == 0:
            return []
        whole = []
        keys = batch.column("job_id")
        for key in pc.unique(keys).to_pylist():
            rows = batch.filter(pc.equal(keys, key))
            self.pending.setdefault(key, []).append(rows)
            self._rows[key] = self._rows.get(key, 0) + rows.num_rows
            if self._rows[key] >= _expected_rows(self.pending[key]):
                whole.append(number(pa.concat_tables(self.pending.pop(key))))
                del self._rows[key]
        return whole

    def incomplete(self) -> list[str]:
        """Jobs (their ids) with rows still missing (empty after a full run: anything else is a bug)."""
        return list(self.pending)


def _expected_rows(tables: list[pa.Table]) -> int:
    """How many rows the job of ``tables`` has, once every chunk is in (else more than it holds)."""
    counts: dict[int, int] = {}
    chunk_count = 0
    for t in tables:
        chunk_count = t.column("chunk_count")[0].as_py()
        for chunk, rows in zip(t.column("chunk_index").to_pylist(), t.column("chunk_rows").to_pylist()):
            counts[chunk] = rows
    if len(counts) < chunk_count:
        return np.iinfo(np.int64).max  # a chunk not seen yet: its rows are unknown
    return sum(counts.values())


def number(job: pa.Table) -> pa.Table:
    """One whole job's rows, ordered by chunk and row, with ``segment_index`` 0..n-1 and ``segment_count`` n."""
    job = job.sort_by([("chunk_index", "ascending"), ("chunk_row", "ascending")]).drop_columns(list(PROVENANCE))
    n = job.num_rows
    return (job.append_column("segment_index", pa.array(np.arange(n, dtype=np.int32)))
               .append_column("segment_count", pa.array(np.full(n, n, dtype=np.int32))))


def number_all(table: pa.Table) -> pa.Table:
    """Every job of ``table`` numbered; the table must hold whole jobs (a test, a local run)."""
    numbering = SegmentNumbering()
    jobs = numbering.add(table)
    if numbering.incomplete():
        raise ValueError(f"rows missing for jobs {numbering.incomplete()}")
    return pa.concat_tables(jobs) if jobs else number(table)
