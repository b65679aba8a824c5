"""What to process: the videos behind an input URI, and the segments of each video.

Listing happens on the driver and touches only names. It is a stream (:func:`iter_jobs`): a
bucket prefix is listed a page at a time, a manifest read a piece at a time, and job rows come out
as Arrow tables of a bounded size, so the driver's memory does not grow with the archive (a
manifest's rows are grouped into jobs through a few spill files on local disk when it is big).
Anything that needs a video's bytes (its duration, its sidecar captions) is decided inside the
decode task, in parallel, by :func:`plan_segments`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import posixpath
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from fsspec.core import url_to_fs

from fv2es.config import ScoreConfig, SegmentsConfig
from fv2es.data.manifest_arrow import ROW_SCHEMA, iter_manifest_tables, utterance_tables
from fv2es.data.transcripts import Segment, text_for_span
from fv2es.errors import InputError
from fv2es.storage import redact_uri

MANIFEST_SUFFIXES = (".csv", ".tsv", ".jsonl", ".ndjson", ".parquet", ".pq")


# Where a segment's text comes from (the ``text_source`` column).
MANIFEST, CAPTION, ASR, NO_TEXT = "manifest", "caption", "asr", "none"


@dataclass(frozen=True)
class SegmentSpec:
    """One segment to score; ``start``/``end`` None mean the start/end of the media."""

    start: float | None
    end: float | None
    text: str = ""
    utterance_id: str | None = None
    text_source: str = NO_TEXT  # manifest | caption | asr | none


def is_manifest(uri: str) -> bool:
    """Whether ``uri`` names a manifest (by its suffix, compression suffixes ignored)."""
    path = uri.lower()
    for compressed in (".gz", ".bz2", ".xz", ".zst"):
        path = path.removesuffix(compressed)
    return path.endswith(MANIFEST_SUFFIXES)


_quote = json.encoder.encode_basestring_ascii  # json.dumps's quoting of one string
PLAN_BATCH = 50_000  # job rows per planned table, and manifest rows grouped in memory before spilling
SPILL_FILES = 64  # a big manifest's rows are spread over this many files by job, then grouped a file at a time
JOB_SCHEMA = pa.schema([("video_uri", pa.string()), ("segments", pa.string()), ("audio_uri", pa.string()),
                        ("audio_channel", pa.int64()), ("speaker_side", pa.string()), ("job_id", pa.string())])


def list_videos(uri: str, extensions: Sequence[str], storage_options: dict | None = None) -> list[str]:
    """Video files named by ``uri``: one file, a glob, or every file under a folder/prefix
    (:func:`iter_videos`, gathered; a list, for small inputs and tests).

    Raises:
        InputError: ``uri`` names nothing, or no file with one of ``extensions``.
    """
    return [v for page in iter_videos(uri, extensions, storage_options) for v in page]


def iter_videos(uri: str, extensions: Sequence[str], storage_options: dict | None = None,
                page: int = PLAN_BATCH) -> Iterator[list[str]]:
    """The video files named by ``uri``, a page (at most ``page`` names) at a time: one file, a
    glob, or every file under a folder or prefix. An S3 prefix is listed a listing page at a time
    (1,000 keys a request, in key order); other stores a folder at a time. Hidden files are skipped.

    Raises:
        InputError: ``uri`` names nothing, or no file with one of ``extensions`` (once the listing is done).
    """
    fs, path = url_to_fs(uri, **(storage_options or {}))
    prefix = "://" in uri and not uri.startswith("file://")
    exts = tuple(e.lower() for e in extensions)
    if any(ch in path for ch in "*?["):
        listing: Iterable[list[str]] = [sorted(fs.glob(path))]
    elif fs.isfile(path):
        yield [uri]
        return
    elif fs.isdir(path):
        listing = _listing(fs, path)
    else:
        raise InputError(f"input {redact_uri(uri)!r} does not exist (or cannot be listed)")
    found, buffer = 0, []
    for names in listing:
        # Listings drop the protocol; give remote paths back theirs so workers open the same file.
        buffer += [fs.unstrip_protocol(p) if prefix else p for p in names
                   if p.lower().endswith(exts) and not posixpath.basename(p).startswith(".")]
        while len(buffer) >= page:
            found += page
            yield buffer[:page]
            buffer = buffer[page:]
    if buffer or not found:
        if not buffer:
            raise InputError(f"no videos under {redact_uri(uri)!r} (looked for {', '.join(exts)})")
        yield buffer


def _listing(fs, path: str) -> Iterator[list[str]]:
    """Every file under ``path``, in pieces: S3 a listing page at a time, other stores a folder at a time."""
    if "s3" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)) and hasattr(fs, "call_s3"):
        bucket, _, key = path.partition("/")
        key = key.rstrip("/") + "/" if key else ""
        token = None
        while True:
            page = fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=key, MaxKeys=1000,
                              **({"ContinuationToken": token} if token else {}))
            yield [f"{bucket}/{c['Key']}" for c in page.get("Contents", []) if not c["Key"].endswith("/")]
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]
    for folder, dirs, files in fs.walk(path):
        dirs.sort()  # walked in name order, as a sorted listing would be
        yield [posixpath.join(folder, f) for f in sorted(files)]


def list_jobs(uri: str, config: ScoreConfig, storage_options: dict | None = None) -> list[dict]:
    """:func:`iter_jobs` as one list of job dicts (small inputs and tests; a job omits no field)."""
    return [row for table in iter_jobs(uri, config, storage_options) for row in table.to_pylist()]


def iter_jobs(uri: str, config: ScoreConfig, storage_options: dict | None = None,
              batch: int = PLAN_BATCH, columnar: bool = True) -> Iterator[pa.Table]:
    """The job rows (:data:`JOB_SCHEMA`, with ``job_id``) of ``uri`` in tables of at most
    ``batch`` rows: one per video from a listing (:func:`iter_videos`), or from a manifest its rows
    grouped by video and speaker (:func:`jobs_from_utterances`). A job's ``segments`` is JSON:
    the manifest's segments of that video, or ``""`` to let :func:`plan_segments` choose
    (captions, the whole video, or windows). The driver holds one table at a time. A manifest is
    read in Arrow batches and checked a column at a time
    (:func:`~fv2es.data.manifest_arrow.iter_manifest_tables`; ``columnar=False``: row by row).
    """
    if not is_manifest(uri):
        for page in iter_videos(uri, config.video_extensions, storage_options, batch):
            yield job_table([_job(v) for v in page])
        return
    empty = True
    for table in _manifest_jobs(iter_manifest_tables(uri, storage_options, columnar), batch):
        empty = False
        yield table
    if empty:
        raise InputError(f"manifest {redact_uri(uri)!r} has no rows")


def job_table(jobs: list[dict]) -> pa.Table:
    """Job dicts as a table of :data:`JOB_SCHEMA` (their ``job_id`` computed when absent)."""
    return pa.Table.from_pylist([{**j, "job_id": j.get("job_id") or job_id(j)} for j in jobs], schema=JOB_SCHEMA)


_ROW_SCHEMA = ROW_SCHEMA.append(pa.field("job_id", pa.string()))
_KEYS = ["video_uri", "speaker_side", "audio_uri", "audio_channel"]  # what a job is (see job_id)


def _manifest_jobs(rows: Iterable[pa.Table], batch: int) -> Iterator[pa.Table]:
    """Job tables of a stream of manifest row tables (:data:`~fv2es.data.manifest_arrow.ROW_SCHEMA`).
    A manifest of at most ``batch`` rows is grouped in memory; a bigger one is spread by job over
    :data:`SPILL_FILES` Arrow files in a temporary folder (a job's rows may be anywhere in the
    manifest), then each file is grouped alone. Nothing comes out before every row is read."""
    held: list[tuple[pa.Table, np.ndarray]] = []  # row tables with job ids, and their rows' spill files
    count = 0
    writers: list | None = None
    with tempfile.TemporaryDirectory(prefix="fv2es-plan-") as spill:
        for table in rows:
            held.append(_with_job_ids(table))
            count += table.num_rows
            if count > batch:
                writers = writers or _spill_writers(spill)
                for part, target in held:
                    _spill(writers, part, target)
                held = []
        if writers is None:
            yield from _grouped(pa.concat_tables([t for t, _ in held]) if held else _ROW_SCHEMA.empty_table(), batch)
            return
        for writer in writers:
            writer.close()
        for n in range(SPILL_FILES):
            with pa.memory_map(os.path.join(spill, f"{n:03d}.arrow")) as f:
                table = pa.ipc.open_stream(f).read_all()
            yield from _grouped(table, batch)


def _with_job_ids(table: pa.Table) -> tuple[pa.Table, np.ndarray]:
    """``table`` with its rows' ``job_id`` column, and each row's spill file. The ids (a digest,
    :func:`job_id`) are computed once per distinct job of the table, not per row."""
    key = pc.binary_join_element_wise(table.column("video_uri"), table.column("speaker_side"),
                                      table.column("audio_uri"), table.column("audio_channel").cast(pa.string()),
                                      "\x00")
    distinct = pc.unique(key)
    which = pc.index_in(key, value_set=distinct).to_numpy(zero_copy_only=False)
    _, first = np.unique(which, return_index=True)  # each distinct job's first row
    jobs = table.select(_KEYS).take(pa.array(first))
    ids = _plain_ids(jobs)
    if ids is None:
        keys = jobs.to_pydict()
        ids = [job_id(dict(zip(_KEYS, k))) for k in zip(*(keys[c] for c in _KEYS))]
    targets = np.fromiter((int(j[:8], 16) % SPILL_FILES for j in ids), np.int64, len(ids))
    return table.append_column("job_id", pc.take(pa.array(ids, pa.string()), pa.array(which))), targets[which]


def _plain_ids(jobs: pa.Table) -> list[str] | None:
    """:func:`job_id` of each row of ``jobs`` (the :data:`_KEYS` columns), its JSON key text made
    by Arrow where every name is printable ASCII without ``"`` or ``\\`` (JSON quotes those as they
    are); None when one is not."""
    names = [jobs.column(c) for c in _KEYS[:3]]
    if not all(pc.all(pc.match_substring_regex(c, r'^[ !#-\[\]-~]*$')).as_py() in (True, None) for c in names):
        return None
    channel = pc.max_element_wise(jobs.column("audio_channel"), -1).cast(pa.string())
    keys = pc.binary_join_element_wise('["', names[0], '", "', names[1], '", "', names[2], '", ', channel, "]", "")
    sha256 = hashlib.sha256
    return [sha256(k).hexdigest()[:16] for k in keys.cast(pa.binary()).to_pylist()]


def _spill_writers(folder: str) -> list:
    return [pa.ipc.new_stream(os.path.join(folder, f"{n:03d}.arrow"), _ROW_SCHEMA) for n in range(SPILL_FILES)]


def _spill(writers: list, table: pa.Table, target: np.ndarray) -> None:
    """Append ``table``'s rows to the spill files, each job's rows to the same file (``target``)."""
    order = np.argsort(target, kind="stable")
    bounds = np.searchsorted(target[order], np.arange(SPILL_FILES + 1))
    table = table.take(pa.array(order))
    for n, writer in enumerate(writers):
        if bounds[n + 1] > bounds[n]:
            writer.write_table(table.slice(bounds[n], bounds[n + 1] - bounds[n]))


def _grouped(table: pa.Table, batch: int) -> Iterator[pa.Table]:
    """The job rows of a table of manifest rows, in the order each job first appears: each job's
    segments sorted by start (none: 0) and id, the manifest's order among equals."""
    if not table.num_rows:
        return
    jobs = table.column("job_id")
    rank = pc.index_in(jobs, value_set=pc.unique(jobs))  # jobs numbered by first appearance
    order = pa.table({"rank": rank, "start": pc.fill_null(table.column("start"), 0.0), "id": table.column("id"),
                      "row": pa.array(np.arange(table.num_rows))})
    table = table.take(pc.sort_indices(order, [("rank", "ascending"), ("start", "ascending"), ("id", "ascending"),
                                               ("row", "ascending")]))
    counts = np.bincount(rank.to_numpy(zero_copy_only=False))
    bounds = np.concatenate([[0], np.cumsum(counts)])
    segments = list(zip(*(table.column(c).to_pylist() for c in ("id", "start", "end", "text"))))
    dumps = json.dumps
    for at in range(0, len(counts), batch):
        chunk = range(at, min(len(counts), at + batch))
        firsts = table.take(pa.array(bounds[chunk.start : chunk.stop]))
        text = [dumps(segments[bounds[j] : bounds[j + 1]]) for j in chunk]
        yield pa.Table.from_arrays([firsts.column("video_uri"), pa.array(text, pa.string()), firsts.column("audio_uri"),
                                    firsts.column("audio_channel"), firsts.column("speaker_side"),
                                    firsts.column("job_id")], schema=JOB_SCHEMA)


def jobs_from_utterances(utterances) -> list[dict]:
    """Group utterances into decode jobs: one per video and speaker (side, audio file, channel).

    IEMOCAP's dialog videos hold both actors; each actor's utterances are one job, with that
    actor's half of the frame and channel of the wav.
    """
    return [{k: v for k, v in row.items() if k != "job_id"}
            for table in _manifest_jobs(utterance_tables(utterances), PLAN_BATCH) for row in table.to_pylist()]


def _job(video_uri: str, segments: str = "", audio_uri=None, audio_channel=None, speaker_side=None) -> dict:
    return {
        "video_uri": video_uri,
        "segments": segments,
        "audio_uri": audio_uri or "",
        "audio_channel": -1 if audio_channel is None else int(audio_channel),
        "speaker_side": speaker_side or "",
    }


def job_id(job: dict) -> str:
    """A job's id, the same in every run: a digest of its video, speaker side, audio file and channel.

    A video can be several jobs (IEMOCAP's two actors; a manifest giving each row its own audio
    channel or file), so rows are gathered and resumed by this id, never by the video alone.
    """
    channel = job.get("audio_channel")
    channel = -1 if channel is None or channel < 0 else int(channel)
    # json.dumps of [video, side, audio, channel], spelled out (C-quoted strings): the same text,
    # three times faster, for a planner that computes a million of them
    quoted = (_quote(job["video_uri"]), _quote(job.get("speaker_side") or ""), _quote(job.get("audio_uri") or ""))
    key = f"[{quoted[0]}, {quoted[1]}, {quoted[2]}, {channel}]"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def given_segments(job: dict) -> list[SegmentSpec] | None:
    """The manifest's segments of a job, or None when the job leaves them to the planner."""
    if not job["segments"]:
        return None
    return [SegmentSpec(start, end, text or "", uid, MANIFEST if text else NO_TEXT)
            for uid, start, end, text in json.loads(job["segments"])]


def windows(start: float, end: float, length: float) -> list[tuple[float, float]]:
    """Consecutive windows of ``length`` seconds covering [start, end); the last may be shorter."""
    count = max(1, math.ceil((end - start) / length - 1e-9))
    return [(start + i * length, min(end, start + (i + 1) * length)) for i in range(count)]


def needs_transcript(asr_mode: str, text_source: str) -> bool:
    """Whether speech-to-text should give a segment its text: ``always``, or ``auto`` when
    neither a manifest nor a caption file gave it any."""
    return asr_mode == "always" or (asr_mode == "auto" and text_source == NO_TEXT)


def cuts_at_speech(given: list[SegmentSpec] | None, captions: list[Segment], config: SegmentsConfig,
                   asr_mode: str) -> bool:
    """Whether a video is cut at its speech: ``auto`` segments, speech-to-text on, and neither
    manifest segments nor a caption file to take the segments or the text from."""
    return given is None and not captions and config.mode == "auto" and asr_mode != "never"


def _text(own: str, captions: list[Segment], start: float | None, end: float | None) -> tuple[str, str]:
    """A segment's (text, text_source): its manifest text, else the captions overlapping it.

    A video with a caption file takes its text from it even where no cue overlaps a segment
    (the captions say nobody speaks there), so such a segment is ``caption`` with empty text.
    """
    if own:
        return own, MANIFEST
    if captions:
        return text_for_span(captions, start, end), CAPTION
    return "", NO_TEXT


def _window(captions: list[Segment], start: float, end: float) -> SegmentSpec:
    text, source = _text("", captions, start, end)
    return SegmentSpec(start, end, text, None, source)


def plan_segments(
    given: list[SegmentSpec] | None,
    duration: float,
    config: SegmentsConfig,
    captions: list[Segment] | None = None,
) -> list[SegmentSpec]:
    """The segments to score for one video of ``duration`` seconds.

    - Manifest segments are kept as given; one without times covers the whole video (cut into
      windows in ``window`` mode).
    - Otherwise, ``auto`` takes timed sidecar captions (.srt/.vtt cues) when there are any,
      else the whole video; ``window`` cuts fixed windows of ``window_s``; ``whole`` takes the
      whole video. (Cutting at speech, when nothing gives segments, is the transcription
      stage's job: see :func:`cuts_at_speech`.)
    - A whole-video segment longer than ``max_segment_s`` is cut into windows of that length
      (it would not fit a model batch), each keeping the manifest id with ``#k`` appended.
    - Text comes from the manifest row, else from the captions that overlap the segment.
    """
    captions = captions or []
    if given is None:
        timed = [c for c in captions if c.start is not None and c.end is not None and c.end > c.start]
        if config.mode == "auto" and timed:
            return [SegmentSpec(c.start, c.end, c.text, None, CAPTION) for c in timed]
        if config.mode == "window":
            return [_window(captions, s, e) for s, e in windows(0.0, duration, config.window_s)]
        given = [SegmentSpec(None, None, "")]
    planned = []
    for spec in given:
        if spec.start is not None or spec.end is not None:
            start = 0.0 if spec.start is None else spec.start
            end = duration if spec.end is None else spec.end
            text, source = _text(spec.text, captions, start, end)
            planned.append(SegmentSpec(start, end, text, spec.utterance_id, source))
            continue
        if config.mode == "window":
            spans = windows(0.0, duration, config.window_s)
        elif duration <= config.max_segment_s:
            spans = [(0.0, duration)]
        else:
            spans = windows(0.0, duration, config.max_segment_s)
        for k, (s, e) in enumerate(spans):
            uid = spec.utterance_id if len(spans) == 1 or spec.utterance_id is None else f"{spec.utterance_id}#{k}"
            text, source = _text(spec.text, captions, s, e)
            planned.append(SegmentSpec(s, e, text, uid, source))
    return planned
