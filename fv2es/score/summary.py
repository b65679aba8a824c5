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
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fv2es.emotions import prob_column
from fv2es.failures import OK

KEYS = ["video_uri", "job_id"]
ROW = "_row"  # where a job's first row is in its part: orders a video's jobs (first failure, first duration)


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
    segment's; null without one) and four partial sums per ``prob_*`` column."""
    if "job_id" not in segments.column_names:  # a part written before job ids: a job per video and side
        from fv2es.pipeline.plan import job_id

        sides = segments.column("speaker_side").to_pylist() if "speaker_side" in segments.column_names else None
        ids = [job_id({"video_uri": v, "speaker_side": sides[i] if sides else None})
               for i, v in enumerate(segments.column("video_uri").to_pylist())]
        segments = segments.append_column("job_id", pa.array(ids, pa.string()))
    ok = pc.fill_null(pc.equal(segments.column("status"), OK), False).to_numpy(zero_copy_only=False)
    weight = np.where(ok, np.nan_to_num(spans(segments), nan=0.0), 0.0)
    columns = {
        "video_uri": segments.column("video_uri"), "job_id": segments.column("job_id"),
        ROW: pa.array(np.arange(segments.num_rows, dtype=np.int64)),
        "video_duration_s": segments.column("video_duration_s").cast(pa.float64()),
        "model_id": segments.column("model_id"),
        "ok": pa.array(ok.astype(np.int64)), "weight": pa.array(weight),
    }
    aggregations = [(ROW, "min"), ("video_duration_s", "first"), ("model_id", "first"),
                    ("ok", "count", pc.CountOptions("all")), ("ok", "sum"), ("weight", "sum")]
    for c in prob_columns(segments.column_names):
        p = segments.column(c).to_numpy(zero_copy_only=False).astype(float)
        valid = ok & ~np.isnan(p)  # a modality absent from a segment (null) does not count for its mean
        p = np.where(valid, p, 0.0)
        wp, w, s, n = _partials(c)
        columns.update({wp: pa.array(p * weight), w: pa.array(np.where(valid, weight, 0.0)), s: pa.array(p),
                        n: pa.array(valid.astype(np.int64))})
        aggregations += [(wp, "sum"), (w, "sum"), (s, "sum"), (n, "sum")]
    table = pa.table(columns)
    # Ordered aggregations ("first") need one thread; the tables here are a part's rows.
    jobs = _renamed(table.group_by(KEYS, use_threads=False).aggregate(aggregations))
    jobs = jobs.rename_columns({"ok_count": "segments", "ok_sum": "segments_ok", "weight_sum": "scored_seconds"})
    failed = segments.filter(pc.invert(pa.array(ok))).select(["job_id", "status", "error"])
    first = _renamed(pa.table({"job_id": failed.column("job_id"), "first_status": failed.column("status"),
                               "first_error": pc.fill_null(failed.column("error"), "")})
                     .group_by("job_id", use_threads=False).aggregate([("first_status", "first"),
                                                                       ("first_error", "first")]))
    jobs = jobs.join(first, "job_id", join_type="left outer").sort_by(ROW)  # a join does not keep the order
    order = [*KEYS, ROW, "video_duration_s", "model_id", "segments", "segments_ok", "scored_seconds",
             "first_status", "first_error"]
    return jobs.select(order + [c for c in jobs.column_names if c not in order])


def _renamed(grouped: pa.Table) -> pa.Table:
    """A group_by result with its aggregates named as their columns (``x_sum`` -> ``x``); ``ok_*``
    and ``weight_*`` keep the suffix, to be renamed by the caller."""
    keep = {*KEYS, "ok_count", "ok_sum", "weight_sum"}
    return grouped.rename_columns([c if c in keep else c.rsplit("_", 1)[0] for c in grouped.column_names])


def combine_jobs(jobs: pa.Table, emotions: list[str]) -> pa.Table:
    """The per-video table from job summaries (:func:`summarize_jobs`), given in the order their
    rows count (parts oldest first, each part's jobs by ``_row``): one row per ``video_uri`` with
    the duration-weighted mean of every ``prob_*`` column over the ok segments (the plain mean
    where those have no duration; null without one), the dominant emotion (the largest of the
    ``emotions``' fused means), segment counts, scored seconds and the first failure."""
    probs = [c.removeprefix("_wp:") for c in jobs.column_names if c.startswith("_wp:")]
    aggregations = [("video_duration_s", "first"), ("model_id", "first"), ("segments", "sum"),
                    ("segments_ok", "sum"), ("scored_seconds", "sum"), ("first_status", "first"),
                    ("first_error", "first")]
    aggregations += [(part, "sum") for c in probs for part in _partials(c)]
    grouped = jobs.group_by("video_uri", use_threads=False).aggregate(aggregations)
    col = {name if name == "video_uri" else name.rsplit("_", 1)[0]: grouped.column(name)
           for name in grouped.column_names}
    ok = col["segments_ok"].to_numpy(zero_copy_only=False) > 0
    means = {}
    for c in probs:
        wp, w, s, n = (col[part].to_numpy(zero_copy_only=False).astype(float) for part in _partials(c))
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(w > 0, wp / w, s / n)
        means[c] = pa.array(mean, pa.float64(), mask=~(n > 0))
    fused = [prob_column(e) for e in emotions]
    dominant = np.full(grouped.num_rows, None, dtype=object)
    if fused:  # the first of equal means wins, as np.argmax does
        stacked = np.stack([np.nan_to_num(means[c].to_numpy(zero_copy_only=False).astype(float), nan=-np.inf)
                            for c in fused], 1)
        dominant = np.asarray(emotions, dtype=object)[stacked.argmax(1)]
    segments, segments_ok = col["segments"].cast(pa.int32()), col["segments_ok"].cast(pa.int32())
    first_status = col["first_status"].cast(pa.string())
    return pa.table({
        "video_uri": col["video_uri"],
        "video_duration_s": col["video_duration_s"].cast(pa.float64()),
        "segments": segments, "segments_ok": segments_ok,
        "segments_failed": pc.subtract(segments, segments_ok),
        "scored_seconds": col["scored_seconds"].cast(pa.float64()),
        **{c: means[c] for c in probs},
        "dominant_emotion": pa.array(np.where(ok, dominant, None), pa.string()),
        "status": pc.if_else(pa.array(ok), OK, first_status),
        "error": pc.fill_null(col["first_error"].cast(pa.string()), ""),
        "model_id": col["model_id"].cast(pa.string()),
    })


def summarize_videos(segments: pa.Table, emotions: list[str]) -> pa.Table:
    """One row per video of ``segments`` (rows of whole jobs, each job's in segment order):
    :func:`combine_jobs` of :func:`summarize_jobs`."""
    return combine_jobs(summarize_jobs(segments), emotions)
