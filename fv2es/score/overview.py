"""What a report shows of a scoring output, read in memory bounded by its number of videos
(never its segments): the per-video table, segment counts per status, and the segment rows of a
chosen few videos (found through the job index, so only the parts holding them are read)."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc

from fv2es.emotions import MODALITY_NAMES, emotions_of_columns, prob_column
from fv2es.errors import InputError
from fv2es.score.output import SUMMARIES, ScoreOutput
from fv2es.score.summary import summarize_jobs
from fv2es.storage import options_for

# The segment columns the report draws (timelines and their tables), beside the fused probabilities.
SEGMENT_COLUMNS = {"video_uri", "speaker_side", "segment_index", "utterance_id", "start", "end", "video_duration_s",
                   "text", "top_emotion", "status", "error", "model_id"}


def read_overview(uri: str, storage_options: dict | None, sort_by: str | None, top: int) -> dict:
    """What the scoring section shows, read in memory bounded by the number of videos (never by
    segments): the per-video table (``videos.parquet``, or made from the parts' summaries for an
    output still running), the segments' status counts (the status column, a part at a time),
    and the segment rows of the ``top`` videos selected (by name, or by ``sort_by`` descending)."""
    output = ScoreOutput(uri, options_for(uri, storage_options), beside={SUMMARIES: summarize_jobs})
    schema = output.segment_schema()
    if schema is None:
        raise InputError(f"{uri}: no segments/*.parquet; is this an `fv2es score` output?")
    meta = output.metadata_of_parts()
    emotions = json.loads(meta["fv2es.emotions"]) if "fv2es.emotions" in meta else emotions_of_columns(schema.names)
    videos = output.read_videos()
    if videos is None:  # an interrupted run: summarise what was committed, as the job itself would
        videos = output.videos(emotions)
    if sort_by is not None and sort_by not in videos.column_names:
        raise InputError(f"--sort-by {sort_by!r}: not a column of videos.parquet (one of: "
                         f"{', '.join(c for c in videos.column_names if c != 'video_uri')})")
    order = [(sort_by, "descending"), ("video_uri", "ascending")] if sort_by else [("video_uri", "ascending")]
    videos = videos.sort_by(order)
    statuses: dict[str, int] = {}
    for part in output.iter_segments(["status"]):
        for item in pc.value_counts(part.column("status")).to_pylist():
            statuses[item["values"]] = statuses.get(item["values"], 0) + item["counts"]
    scored = videos.filter(pc.greater(videos.column("segments_ok"), 0))
    chosen = scored.column("video_uri").slice(0, top).combine_chunks()
    parts, index = output.job_index()
    holding = pc.unique(index.filter(pc.is_in(index.column("video_uri"), chosen)).column("part")).to_pylist()
    # the fused columns and each modality's own (the timelines say which modality drove a segment)
    probs = {prob_column(e, m) for e in emotions for m in (None, *MODALITY_NAMES.values())}
    columns = [c for c in schema.names if c in SEGMENT_COLUMNS or c in probs]
    picked = [t.filter(pc.is_in(t.column("video_uri"), chosen)) for t in output.iter_segments(columns, sorted(holding))]
    segments = pa.concat_tables(picked, promote_options="permissive") if picked else schema.empty_table().select(columns)
    return {"segments": segments, "chosen": chosen.to_pylist(), "scored": scored.num_rows, "statuses": statuses,
            "videos": videos, "success": output.success(), "emotions": emotions, "meta": meta,
            "videos_uri": f"{uri.rstrip('/')}/videos{output.format.suffix}"}
