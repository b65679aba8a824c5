"""The job index of a scoring output, as tables: one row per committed job with its part.

:class:`~fv2es.score.output.ScoreOutput` reads the files and keeps the index; the rules over its
rows live here, as functions of Arrow tables (no files, no loops over rows): which part's rows of
a job count, which rows a later part superseded, which jobs may hold a failed segment.
"""

from __future__ import annotations

import posixpath

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

PART = "part"  # the index's column naming a row's part: its file name on disk, its position in memory


def named(table: pa.Table, part: str) -> pa.Table:
    """``table`` (a part's job rows) with the part's name as its first column."""
    return table.add_column(0, PART, pa.array([part] * table.num_rows, pa.string()))


def merged(tables: list[pa.Table], parts: list[str]) -> pa.Table:
    """The job rows of several parts (``tables``, of the part files ``parts``) as one table of one
    chunk, each named by :func:`named`: a piece of an index that holds one table, not thousands."""
    return assemble([named(t, posixpath.basename(p)) for t, p in zip(tables, parts)], None).combine_chunks()


def assemble(tables: list[pa.Table], names: list[str] | None) -> pa.Table:
    """One index from per-part tables named by :func:`named`: ``part`` becomes the position of its
    name in ``names`` (the sorted part files), rows in part order, each part's jobs in their order.
    ``names`` None: the tables one after the other, ``part`` left as it is (a piece of an index)."""
    if not tables:
        return pa.table({PART: pa.array([], pa.int32()), "job_id": pa.array([], pa.string()),
                         "video_uri": pa.array([], pa.string())})
    index = pa.concat_tables([t.replace_schema_metadata(None) for t in tables], promote_options="permissive")
    if names is None:
        return index
    position = pc.index_in(index.column(PART), value_set=pa.array(names)).cast(pa.int32())
    index = index.set_column(index.column_names.index(PART), PART, position)
    order = [(PART, "ascending")] + ([("_row", "ascending")] if "_row" in index.column_names else [])
    return index.sort_by(order)


def with_names(index: pa.Table, names: list[str]) -> pa.Table:
    """The index with each ``part`` position replaced by its part's name (to be written down)."""
    return index.set_column(index.column_names.index(PART), PART, pc.take(pa.array(names), index.column(PART)))


def latest(index: pa.Table) -> np.ndarray:
    """For each row, whether its part is the last holding that job (its rows are the ones that count)."""
    if not index.num_rows:
        return np.zeros(0, bool)
    last = index.select(["job_id", PART]).group_by("job_id").aggregate([(PART, "max")])
    probe = pa.table({"job_id": index.column("job_id"), "_i": pa.array(np.arange(index.num_rows))})
    joined = probe.join(last, "job_id").sort_by("_i")
    return pc.equal(index.column(PART), joined.column(f"{PART}_max")).to_numpy(zero_copy_only=False)


def superseded(index: pa.Table) -> dict[int, pa.Array]:
    """part position -> the ids of its jobs that a later part re-scored (empty: nothing superseded)."""
    old = index.filter(pa.array(~latest(index)))
    return {p: old.filter(pc.equal(old.column(PART), p)).column("job_id").combine_chunks()
            for p in pc.unique(old.column(PART)).to_pylist()}


def summarized(index: pa.Table) -> bool:
    """Whether every row has its part's summary (parts written before summaries have nulls)."""
    return "segments" in index.column_names and not index.column("segments").null_count


def maybe_failed(index: pa.Table) -> pa.Table:
    """The rows whose job may hold a failed segment: fewer ``segments_ok`` than ``segments``, or
    no summary to say (every row, when the index has no summaries)."""
    if "segments" not in index.column_names:
        return index
    unknown = pc.is_null(index.column("segments"))
    return index.filter(pc.or_(unknown, pc.less(pc.fill_null(index.column("segments_ok"), 0),
                                                pc.fill_null(index.column("segments"), 0))))
