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

With ``segments.per_person`` the face stage makes one row per visible person of a segment: those
rows share the segment's ``chunk_row`` and say ``person`` / ``persons`` (which of how many), so a
job is whole when every row of every chunk is in with all its persons; they are ordered by
person within their segment.

A whole job is also where its speakers are labelled (the same voice in two segments is one
speaker): the speaker stage's pieces of speech of all its segments are clustered
(:func:`fv2es.media.diarize.label_job`) into ``speaker`` and ``speaker_turns``.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fv2es.pipeline.packing import unpack

PROVENANCE = ("chunk_index", "chunk_count", "chunk_row", "chunk_rows")
PERSONS = ("person", "persons")  # a segment's rows of its visible people (segments.per_person) only
VOICE_COLUMNS = ("voice_spans", "voice_embeddings")  # the speaker stage's, for labelling only


class SegmentNumbering:
    """Holds each job's rows until the job is whole, then numbers its segments over the job.

    ``add`` takes a batch of rows of any jobs (columns ``job_id`` and :data:`PROVENANCE`) and
    returns the jobs it completed, one table each, with ``segment_index`` and ``segment_count``
    appended and the provenance columns dropped.
    """

    def __init__(self, speaker_threshold: float | None = None):
        self.speaker_threshold = speaker_threshold  # speakers.threshold (None: diarize's default)
        self.pending: dict[str, list[pa.Table]] = {}
        self._rows: dict[str, int] = {}

    def add(self, batch: pa.Table) -> list[pa.Table]:
        """The jobs of ``batch`` that are now whole, numbered (a job's rows may span many batches).

        The jobs whose rows all came in ``batch`` (most: a short video is one chunk) are numbered
        together, as one table, with no per-job table work (:func:`number_many`); a fast failed
        input costs the driver a share of a batch, not a table of its own. A job with speech for
        the speaker labels, or with rows elsewhere, is numbered alone once whole."""
        if batch.num_rows == 0:
            return []
        keys = batch.column("job_id")
        together = _whole_here(batch, self.pending)
        whole = [number_many(batch.filter(pc.is_in(keys, value_set=together)))] if len(together) else []
        rest = pc.unique(keys)
        if len(together):
            rest = rest.filter(pc.invert(pc.is_in(rest, value_set=together)))
        for key in rest.to_pylist():
            rows = batch.filter(pc.equal(keys, key))
            self.pending.setdefault(key, []).append(rows)
            self._rows[key] = self._rows.get(key, 0) + rows.num_rows
            if self._rows[key] >= _expected_rows(self.pending[key]):
                whole.append(number(pa.concat_tables(self.pending.pop(key)), self.speaker_threshold))
                del self._rows[key]
        return whole

    def incomplete(self) -> list[str]:
        """Jobs (their ids) with rows still missing (empty after a full run: anything else is a bug)."""
        return list(self.pending)


def _whole_here(batch: pa.Table, pending: dict) -> pa.Array:
    """The ids of the jobs whose every row is in ``batch`` (none pending from earlier batches) and
    that need no speaker labelling (no speech pieces): every chunk in (``chunk_count`` of them),
    each with its ``chunk_rows`` rows. Rows of per-person segments are left to the per-job path."""
    if "persons" in batch.column_names:
        return pa.array([], pa.string())
    chunks = batch.select(["job_id", "chunk_index", "chunk_count", "chunk_rows"]).group_by(
        ["job_id", "chunk_index"]).aggregate([([], "count_all"), ("chunk_count", "max"), ("chunk_rows", "max")])
    jobs = chunks.group_by("job_id").aggregate([([], "count_all"), ("chunk_count_max", "max"),
                                                ("chunk_rows_max", "sum"), ("count_all", "sum")])
    whole = pc.and_(pc.equal(jobs.column("count_all"), jobs.column("chunk_count_max_max")),
                    pc.equal(jobs.column("count_all_sum"), jobs.column("chunk_rows_max_sum")))
    if set(VOICE_COLUMNS) <= set(batch.column_names):  # a job with speech pieces is labelled alone
        voiced = pc.unique(batch.column("job_id").filter(pc.is_valid(batch.column("voice_spans"))))
        whole = pc.and_(whole, pc.invert(pc.is_in(jobs.column("job_id"), value_set=voiced)))
    ids = jobs.column("job_id").filter(whole)
    if pending and len(ids):
        ids = pa.array([k for k in ids.to_pylist() if k not in pending], pa.string())
    return ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids


def number_many(jobs: pa.Table) -> pa.Table:
    """Whole jobs' rows, numbered as :func:`number` numbers each, in one table: the jobs in the
    order they first appear, each job's rows by chunk and row; for jobs with no speech pieces
    (their ``speaker`` and ``speaker_turns``: null)."""
    first = pc.dictionary_encode(jobs.column("job_id").combine_chunks()).indices  # by first appearance
    jobs = jobs.append_column("_job", first).sort_by(
        [("_job", "ascending"), ("chunk_index", "ascending"), ("chunk_row", "ascending")])
    which = jobs.column("_job").to_numpy()
    jobs = jobs.drop_columns(["_job"])
    if set(VOICE_COLUMNS) <= set(jobs.column_names):
        nulls = pa.nulls(jobs.num_rows, pa.string())
        jobs = jobs.drop_columns(list(VOICE_COLUMNS)).append_column("speaker", nulls).append_column(
            "speaker_turns", nulls)
    jobs = jobs.drop_columns(list(PROVENANCE))
    counts = np.bincount(which)  # the rows are sorted by job: each job's rows are one run
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    index = np.arange(jobs.num_rows) - starts[which]
    return (jobs.append_column("segment_index", pa.array(index.astype(np.int32)))
                .append_column("segment_count", pa.array(counts[which].astype(np.int32))))


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
    if "persons" not in tables[0].column_names:
        return sum(counts.values())
    persons: dict[tuple[int, int], int] = {}  # (chunk, row) -> its rows (one per visible person)
    for t in tables:
        for key in zip(t.column("chunk_index").to_pylist(), t.column("chunk_row").to_pylist(),
                       t.column("persons").to_pylist()):
            persons[key[:2]] = key[2]
    if len(persons) < sum(counts.values()):
        return np.iinfo(np.int64).max  # a segment not seen yet: how many people it shows is unknown
    return sum(persons.values())


def number(job: pa.Table, speaker_threshold: float | None = None) -> pa.Table:
    """One whole job's rows, ordered by chunk and row, with ``segment_index`` 0..n-1 and ``segment_count`` n
    (and its speakers labelled at ``speaker_threshold``: :func:`label_speakers`)."""
    keys = [("chunk_index", "ascending"), ("chunk_row", "ascending")]
    persons = [c for c in PERSONS if c in job.column_names]
    job = label_speakers(job.sort_by(keys + ([("person", "ascending")] if persons else [])), speaker_threshold)
    job = job.drop_columns([*PROVENANCE, *persons])
    n = job.num_rows
    return (job.append_column("segment_index", pa.array(np.arange(n, dtype=np.int32)))
               .append_column("segment_count", pa.array(np.full(n, n, dtype=np.int32))))


def label_speakers(job: pa.Table, threshold: float | None = None) -> pa.Table:
    """One whole job's rows with ``speaker`` (``S0``, ``S1``, ... by first appearance in the video;
    null without speech or without the speaker stage), ``speaker_turns`` (JSON ``[[start, end,
    speaker, face_track], ...]``: the segment's runs of one voice, seconds from the media start;
    ``face_track``: the face track whose mouth moved with that speaker's speech in most of the
    video's segments, null when no segment's face was chosen by it); the voice columns dropped.
    Rows without the speaker stage's columns are returned as they are. ``threshold``: the
    clustering's (``speakers.threshold``; None: :data:`fv2es.media.diarize.THRESHOLD`)."""
    if not set(VOICE_COLUMNS) <= set(job.column_names):
        return job
    from fv2es.media.diarize import THRESHOLD, label_job

    # A segment's rows of its people (segments.per_person) share its voice: count it once.
    first = (np.asarray(job.column("person").to_pylist()) == 0 if "person" in job.column_names
             else np.ones(job.num_rows, bool))
    spans = [unpack(b, (2,), np.float32) for b, f in zip(job.column("voice_spans").to_pylist(), first) if f]
    embeddings = [unpack(b, (256,), np.float16).astype(np.float32)
                  for b, f in zip(job.column("voice_embeddings").to_pylist(), first) if f]
    speakers, turns = label_job(spans, embeddings, THRESHOLD if threshold is None else threshold)
    segment = np.cumsum(first) - 1  # rows are in segment order, a segment's first person first
    speakers, turns = [speakers[k] for k in segment], [turns[k] for k in segment]
    faces = _faces_of(speakers, job)
    turns_json = [json.dumps([[t.start, t.end, t.speaker, faces.get(t.speaker)] for t in ts]) if ts else None
                  for ts in turns]
    job = job.drop_columns(list(VOICE_COLUMNS))
    return job.append_column("speaker", pa.array(speakers, pa.string())).append_column(
        "speaker_turns", pa.array(turns_json, pa.string()))


def _faces_of(speakers: list, job: pa.Table) -> dict:
    """Each speaker's face track: the one the face stage chose by its mouth (``face_select`` =
    ``speaker``) in most of that speaker's segments."""
    if "face_select" not in job.column_names or "face_track" not in job.column_names:
        return {}
    votes: dict[str, dict[int, int]] = {}
    for who, rule, track in zip(speakers, job.column("face_select").to_pylist(), job.column("face_track").to_pylist()):
        if who is not None and rule == "speaker" and track is not None:
            votes.setdefault(who, {}).setdefault(track, 0)
            votes[who][track] += 1
    return {who: max(v, key=v.get) for who, v in votes.items()}


def number_all(table: pa.Table) -> pa.Table:
    """Every job of ``table`` numbered; the table must hold whole jobs (a test, a local run)."""
    numbering = SegmentNumbering()
    jobs = numbering.add(table)
    if numbering.incomplete():
        raise ValueError(f"rows missing for jobs {numbering.incomplete()}")
    if not jobs:
        return number(table)
    out = pa.concat_tables(jobs)  # the jobs in the order they first appear in ``table``
    rank = pc.index_in(out.column("job_id"), value_set=pc.unique(table.column("job_id"))).to_numpy()
    return out.take(pa.array(np.argsort(rank, kind="stable")))
