"""The per-video summary of a scoring output (``videos.parquet``), made in two steps so that no
step reads every segment of the output:

1. :func:`summarize_jobs`, when a part is committed: one row per job (a video, or one speaker
   or audio track of it) of that part's segment rows, holding sums, not means (segment counts,
   scored seconds, for every ``prob_*`` column the duration-weighted and the plain sums over the
   ok segments that have a value, and how many), plus the first failure. The output keeps it
   beside the part (``summaries/``).
2. :func:`combine_jobs`, when the output is finished: the job rows of every part, in part order,
   grouped by ``video_uri`` (a video's jobs may land in different parts, even in different runs),
   the sums added up and divided once. Its cost grows with the number of jobs, not segments.

:func:`summarize_videos` is both steps at once, for a table of segment rows in memory.

Each segment counts once. With ``segments.per_person`` a segment showing several people is one
row per person; the rows of the other people (``face_select`` ``person``) are left out of the
summary, so a video's segment counts, ``scored_seconds`` and means are of its segments as scored
without ``per_person`` (the row of the face ``faces.select`` chose: the speaker's, by default),
and a video's summary is the same with or without it. The other people's scores are in the
segment table.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fv2es.emotions import prob_column
from fv2es.failures import OK

KEYS = ["video_uri", "job_id"]
ROW = "_row"  # where a job's first row is in its part: orders a video's jobs (first failure, first duration)
OTHER_PERSON = "person"  # the face_select of a per-person segment's rows of the people not chosen


def chosen_rows(segments: pa.Table) -> pa.Table:
    """``segments`` without the rows of the people a segment's face rule did not choose
    (``face_select`` ``person``: :mod:`fv2es.pipeline.stages.faces` with ``segments.per_person``),
    so that each segment is one row: the same one it is without ``per_person``."""
    if "face_select" not in segments.column_names:
        return segments
    other = pc.fill_null(pc.equal(segments.column("face_select"), OTHER_PERSON), False)
    return segments.filter(pc.invert(other)) if pc.any(other).as_py() else segments


def spans(table: pa.Table) -> np.ndarray:
    """Each segment row's length in seconds (``end - start``; NaN where either is missing)."""
    start = table.column("start").to_numpy(zero_copy_only=False).astype(float)
    end = table.column("end").to_numpy(zero_copy_only=False).astype(float)
    return end - start


def prob_columns(columns) -> list[str]:
    """Every probability column among ``columns`` (fused ``prob_<emotion>`` and per-modality
    ``prob_<modality>_<emotion>``), in their order: each is summarised by the same mean."""
    return [c for c in columns if c.startswith("prob_")]


def _partials(c: str) -> tuple[str, str, str, str]:
    """The job-summary columns of probability column ``c``: weighted sum, weight, plain sum, count."""
    return f"_wp:{c}", f"_w:{c}", f"_p:{c}", f"_n:{c}"


def summarize_jobs(segments: pa.Table) -> pa.Table:
    """One row per job of ``segments`` (a part's rows, each job's rows in segment order): the sums
    :func:`combine_jobs` makes a video's row of. Columns: ``video_uri``, ``job_id``, ``_row``,
    ``video_duration_s`` and ``model_id`` (the job's first non-null), ``segments``,
    ``segments_ok``, ``scored_seconds``, ``first_status`` / ``first_error`` (its first failed
    segment's; null without one) and four partial sums per ``prob_*`` column. The rows of the
    people not chosen (``face_select`` ``person``, with ``segments.per_person``) do not count: a
    segment counts once (:func:`chosen_rows`)."""
    segments = chosen_rows(segments)
    if "job_id" not in segments.column_names:  # a part written before job ids: a job per video and side
        from fv2es.pipeline.plan import job_id

        sides = segments.column("speaker_side").to_pylist() if "speaker_side" in segments.column_names else None
        ids = [job_id({"video_uri": v, "speaker_side": sides[i] if sides else None})
               for i, v in enumerate(segments.column("video_uri").to_pylist())]
        segments = segments.append_column("job_id", pa.array(ids, pa.string()))
    ok = pc.fill_null(pc.equal(segments.column("status"), OK), False).to_numpy(zero_copy_only=False)
    weight = np.where(ok, np.nan_to_num(spans(segments), nan=0.0), 0.0)
    jobs = _Groups(segments.column("job_id"))
    failed = _Groups(segments.column("job_id"), ~ok, jobs.keys)  # each job's failed rows
    columns = {
        "video_uri": jobs.first(segments.column("video_uri")), "job_id": jobs.keys,
        ROW: pa.array(jobs.starts), "video_duration_s": jobs.first(segments.column("video_duration_s").cast(pa.float64())),
        "model_id": jobs.first(segments.column("model_id")),
        "segments": pa.array(jobs.total(np.ones(len(ok))), pa.float64()).cast(pa.int64()),
        "segments_ok": pa.array(jobs.total(ok), pa.float64()).cast(pa.int64()),
        "scored_seconds": pa.array(jobs.total(weight)),
        "first_status": failed.first(segments.column("status")),
        "first_error": failed.first(pc.fill_null(segments.column("error"), ""), skip_nulls=False),
    }
    for c in prob_columns(segments.column_names):
        p = segments.column(c).to_numpy(zero_copy_only=False).astype(float)
        valid = ok & ~np.isnan(p)  # a modality absent from a segment (null) does not count for its mean
        p = np.where(valid, p, 0.0)
        wp, w, s, n = _partials(c)
        columns.update({wp: pa.array(jobs.total(p * weight)), w: pa.array(jobs.total(np.where(valid, weight, 0.0))),
                        s: pa.array(jobs.total(p)), n: pa.array(jobs.total(valid), pa.float64()).cast(pa.int64())})
    return pa.table(columns)


class _Groups:
    """The rows of a table grouped by a key column, numbered in the order each key first appears
    (as a hash aggregation numbers them): sums by ``numpy.bincount``, firsts by ``numpy.unique``,
    a column at a time. ``where``: only those rows count, the groups being ``keys`` (a key's rows
    there, or none)."""

    def __init__(self, column: pa.ChunkedArray, where: np.ndarray | None = None, keys: pa.Array | None = None):
        self.keys = pc.unique(column) if keys is None else keys
        self.group = pc.index_in(column, value_set=self.keys).to_numpy(zero_copy_only=False)
        self.where = np.ones(len(self.group), bool) if where is None else where
        self.starts = self._firsts(self.where)  # each group's first row (-1: none)

    def _firsts(self, where: np.ndarray) -> np.ndarray:
        rows = np.flatnonzero(where)
        groups, at = np.unique(self.group[rows], return_index=True)
        firsts = np.full(len(self.keys), -1, np.int64)
        firsts[groups] = rows[at]
        return firsts

    def total(self, values: np.ndarray) -> np.ndarray:
        return np.bincount(self.group[self.where], weights=np.asarray(values, float)[self.where],
                           minlength=len(self.keys))

    def first(self, column, skip_nulls: bool = True) -> pa.Array:
        """Each group's first value (its first non-null with ``skip_nulls``), null for a group without one."""
        rows = self.starts
        if skip_nulls and column.null_count:
            rows = self._firsts(self.where & pc.is_valid(column).to_numpy(zero_copy_only=False))
        taken = pc.take(column, pa.array(rows, mask=rows < 0))
        return taken.combine_chunks() if isinstance(taken, pa.ChunkedArray) else taken


def combine_jobs(jobs: pa.Table, emotions: list[str]) -> pa.Table:
    """The per-video table from job summaries (:func:`summarize_jobs`), given in the order their
    rows count (parts oldest first, each part's jobs by ``_row``): one row per ``video_uri`` (in
    the order each first appears) with the duration-weighted mean of every ``prob_*`` column over
    the ok segments (the plain mean where those have no duration; null without one), the dominant
    emotion (the largest of the ``emotions``' fused means), segment counts, scored seconds and the
    first failure.

    The grouping is numpy's (``bincount`` of each sum column by the video's number, the first
    non-null row of each video by ``unique``), a column at a time: memory a few arrays of one
    number per job, where a hash aggregation of every column at once held several times the index."""
    probs = [c.removeprefix("_wp:") for c in jobs.column_names if c.startswith("_wp:")]
    videos = _Groups(jobs.column("video_uri"))
    count = len(videos.keys)

    def total(name: str) -> np.ndarray:
        return videos.total(pc.fill_null(jobs.column(name), 0).to_numpy(zero_copy_only=False))

    def first(name: str) -> pa.Array:  # each video's first non-null value (null without one)
        return videos.first(jobs.column(name))

    segments_ok = total("segments_ok")
    ok = segments_ok > 0
    means = {}
    for c in probs:
        wp, w, s, n = (total(part) for part in _partials(c))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(w > 0, wp / w, s / n)
        means[c] = pa.array(mean, pa.float64(), mask=~(n > 0))
    fused = [prob_column(e) for e in emotions]
    dominant = np.full(count, None, dtype=object)
    if fused:  # the first of equal means wins, as np.argmax does
        stacked = np.stack([np.nan_to_num(means[c].to_numpy(zero_copy_only=False).astype(float), nan=-np.inf)
                            for c in fused], 1)
        dominant = np.asarray(emotions, dtype=object)[stacked.argmax(1)]
    segments, segments_ok = pa.array(total("segments"), pa.float64()).cast(pa.int32()), pa.array(segments_ok).cast(pa.int32())
    return pa.table({
        "video_uri": videos.keys,
        "video_duration_s": first("video_duration_s").cast(pa.float64()),
        "segments": segments, "segments_ok": segments_ok,
        "segments_failed": pc.subtract(segments, segments_ok),
        "scored_seconds": pa.array(total("scored_seconds"), pa.float64()),
        **{c: means[c] for c in probs},
        "dominant_emotion": pa.array(np.where(ok, dominant, None), pa.string()),
        "status": pc.if_else(pa.array(ok), OK, first("first_status").cast(pa.string())),
        "error": pc.fill_null(first("first_error").cast(pa.string()), ""),
        "model_id": first("model_id").cast(pa.string()),
    })


def summarize_videos(segments: pa.Table, emotions: list[str]) -> pa.Table:
    """One row per video of ``segments`` (rows of whole jobs, each job's in segment order):
    :func:`combine_jobs` of :func:`summarize_jobs`."""
    return combine_jobs(summarize_jobs(segments), emotions)
