"""The decode stage: job rows (one per video) -> planned segment rows with frames, waveform, text.

Each row carries what the later stages need and nothing they would have to re-derive: the
sampled frames with their presentation times, the mono waveform (float32 at the decode rate),
the segment's text with where it came from, and the caption cues that overlap it.

A row is either a final segment, or, when speech-to-text is on and the segments still have to
be cut from the speech (or are adjacent windows that want one transcript across them), a
*chunk* row: one decoded stretch plus its ``cuts`` (see :mod:`fv2es.pipeline.stages.transcribe`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from fsspec.core import url_to_fs

from fv2es.config import ResourcesConfig, SegmentsConfig
from fv2es.data.transcripts import Segment, find_sidecar, overlaps, read_sidecar
from fv2es.failures import OK, MediaError
from fv2es.media.decode import DecodeConfig, Decoded
from fv2es.media.isolate import decode_retrying, probe_retrying
from fv2es.pipeline.packing import pack
from fv2es.pipeline.plan import (
    NO_TEXT,
    SegmentSpec,
    cuts_at_speech,
    given_segments,
    job_id,
    needs_transcript,
    plan_segments,
    windows,
)
from fv2es.pipeline.spec import MediaJob, StageSpec
from fv2es.pipeline.timing import apportion
from fv2es.storage import options_for, redact_uri

SPEECH = "speech"  # the ``cuts`` of a chunk row that the transcription stage cuts at the speech

# One row per segment (or chunk) after decoding. Explicit, so every block has the same schema.
DECODED_SCHEMA = pa.schema([
    ("video_uri", pa.string()),
    ("job_id", pa.string()),  # see job_id(): which job (video, speaker side, audio) the row belongs to
    # Where the row came from (fv2es.pipeline.numbering numbers the segments once the job is whole):
    ("chunk_index", pa.int32()),  # which of the job's decode chunks
    ("chunk_count", pa.int32()),  # of how many
    ("chunk_row", pa.int32()),  # the row's place in its chunk
    ("chunk_rows", pa.int32()),  # of how many rows the chunk yields (set again by a stage that cuts it)
    ("utterance_id", pa.string()),
    ("start", pa.float64()),
    ("end", pa.float64()),
    ("video_duration_s", pa.float64()),
    ("text", pa.string()),
    ("text_source", pa.string()),  # manifest | caption | asr | none
    ("language", pa.string()),  # of the transcript, when speech-to-text gave the text
    ("asr_confidence", pa.float64()),  # mean word probability, likewise
    ("captions", pa.string()),  # JSON [[start, end, text], ...]: the cues overlapping the row
    ("speaker_side", pa.string()),
    ("frames", pa.binary()),  # uint8 (frames_sampled, frame_height, frame_width, 3)
    ("frame_times", pa.binary()),  # float64 (frames_sampled,): seconds from the media start
    ("frame_height", pa.int32()),
    ("frame_width", pa.int32()),
    ("frames_sampled", pa.int32()),
    ("waveform", pa.binary()),  # float32 (waveform_samples,) mono at decode.sample_rate
    ("waveform_samples", pa.int64()),
    ("has_video", pa.bool_()),
    ("has_audio", pa.bool_()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("decode_ms", pa.float64()),
    ("asr_ms", pa.float64()),  # filled by the transcription stage
    # Chunk rows only: "speech", or JSON [[start, end, utterance_id, text, text_source], ...].
    ("cuts", pa.string()),
])


def _job_from_row(row: dict) -> dict:
    return {**row, "audio_channel": None if row["audio_channel"] < 0 else row["audio_channel"]}


@dataclasses.dataclass
class _Chunk:
    """Segments decoded by one call; ``cuts`` says whether the transcription stage cuts them."""

    specs: list[SegmentSpec]
    cuts: str = ""
    chunk_index: int = 0
    chunk_count: int = 1


class Decode:
    """Job rows (one per video) -> segment rows: planned, decoded, captions attached.

    Meant for ``map_batches(Decode(...), batch_size=None, batch_format="pyarrow")`` (a block of
    job rows a call: the block is one task's, :func:`fv2es.pipeline.dataset.block_size`): it is a
    generator, yielding one table per decoded chunk of at most ``resources.chunk_s`` media
    seconds, so a long video never sits in memory whole; consecutive failed inputs and chunks
    (small: no media) leave together, as one table, where they came. Decoding runs in a child process
    (:mod:`fv2es.media.isolate`), so a decoder crash fails one video, not the worker; a transient
    failure (the decoder killed, a read failing) is tried again ``resources.decode_retries`` times
    with backoff before it is recorded. ``asr_mode`` (``asr.mode``) says whether a transcription stage follows: only then are
    segments left for it to cut.
    """

    name, title, pool = "decode", "decode tasks", None
    config_sections = ("decode", "segments")
    # The score table's columns that come from here (the job's identity, the segment, the media).
    columns = ("video_uri", "segment_index", "segment_count", "utterance_id", "start", "end", "video_duration_s",
               "text", "text_source", "speaker_side", "job_id", "frames_sampled", "has_video", "has_audio")
    timing = ("decode_ms",)

    @classmethod
    def enabled(cls, cfg) -> bool:
        """Whether a job with ``cfg`` runs this stage (always)."""
        return True

    @classmethod
    def spec(cls, job: MediaJob) -> StageSpec:
        """Tasks of a block of job rows each (one call a block), as many at once as the CPUs hold
        (:func:`fv2es.compute.decode_tasks`)."""
        from fv2es.compute import decode_tasks

        cfg, r = job.cfg, job.cfg.resources
        return StageSpec(cls.name, cls, (cfg.decode, job.segments, r, job.storage_options, cfg.asr.mode),
                         batch_size=None, cpus=r.decode_cpus, tasks=decode_tasks(r, job.cluster_cpus))

    def __init__(self, decode: DecodeConfig, segments: SegmentsConfig, resources: ResourcesConfig,
                 storage_options: dict | None = None, asr_mode: str = "never"):
        self.decode_config = decode
        self.segments = segments
        self.resources = resources
        self.storage_options = storage_options or {}  # for remote URIs (a local manifest may list s3:// videos)
        self.asr_mode = asr_mode

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        failed = []  # consecutive tables of failed rows (no media): they leave as one, in their place
        for row in batch.to_pylist():
            for table in self.process(_job_from_row(row)):
                if OK not in table.column("status").to_pylist():
                    failed.append(table)
                    continue
                if failed:
                    yield pa.concat_tables(failed)
                    failed = []
                yield table
        if failed:
            yield pa.concat_tables(failed)

    def process(self, job: dict) -> Iterator[pa.Table]:
        """The tables of one job (a video, or one speaker of it)."""
        start_time = time.perf_counter()
        uri, given = job["video_uri"], given_segments(job)
        try:
            r = self.resources
            info = probe_retrying(uri, options_for(uri, self.storage_options), self.decode_config, r.decode_retries,
                                  r.retry_backoff_s)
        except MediaError as e:
            specs = given or [SegmentSpec(None, None)]
            failed = [_failed(s, e.kind, e.message) for s in specs]
            yield self._table(job, _Chunk(specs), failed, None, [], start_time)
            return
        captions, warning = self._captions(uri, given)
        duration = info.duration_s if info.duration_s and math.isfinite(info.duration_s) else None
        for chunk in self._plan(given, duration, captions):
            decoded = self._decode(job, chunk)
            if warning:
                for d in decoded:
                    d.error = d.error or warning
            yield self._table(job, chunk, decoded, duration, captions, start_time)
            start_time = time.perf_counter()  # the probe and captions are charged to the first chunk

    def _plan(self, given, duration: float | None, captions: list[Segment]) -> list[_Chunk]:
        """The chunks to decode (each knows its place among the job's chunks)."""
        if cuts_at_speech(given, captions, self.segments, self.asr_mode):
            spans = windows(0.0, duration, self.resources.chunk_s) if duration else [(None, None)]
            return [_Chunk([SegmentSpec(s, e)], SPEECH, k, len(spans)) for k, (s, e) in enumerate(spans)]
        if duration is None and (given is None or any(s.start is None and s.end is None for s in given)):
            # No declared duration: one pass over the whole file finds where it ends.
            text = given[0].text if given else " ".join(c.text for c in captions)
            source = given[0].text_source if given and text else ("caption" if captions else NO_TEXT)
            specs = [SegmentSpec(None, None, text, given[0].utterance_id if given else None, source)]
        else:
            specs = plan_segments(given, duration or 0.0, self.segments, captions)
        groups = list(_chunks(specs, self.resources.chunk_s))
        return [_Chunk(group, self._joined_cuts(group), k, len(groups)) for k, group in enumerate(groups)]

    def _joined_cuts(self, group: list[SegmentSpec]) -> str:
        """Adjacent segments that all want a transcript are decoded as one stretch and cut after
        transcription, so a word on a boundary goes to every segment it overlaps."""
        if len(group) < 2 or not all(needs_transcript(self.asr_mode, s.text_source) for s in group):
            return ""
        if any(s.start is None or s.end is None for s in group):
            return ""
        if any(abs(a.end - b.start) > 1e-6 for a, b in zip(group, group[1:])):
            return ""
        return json.dumps([[s.start, s.end, s.utterance_id, s.text, s.text_source] for s in group])

    def _captions(self, uri: str, given) -> tuple[list, str]:
        if given is not None and all(s.text for s in given):
            return [], ""
        try:
            fs = url_to_fs(uri, **options_for(uri, self.storage_options))[0]
            sidecar = find_sidecar(uri, fs)
            return (read_sidecar(sidecar, fs, max_bytes=self.decode_config.sidecar_max_bytes,
                                 max_cues=self.decode_config.sidecar_max_cues) if sidecar else []), ""
        except MediaError as e:  # an unreadable caption file costs the text, not the video
            return [], f"warning: {e.kind}: {e.message}; text taken as absent"

    def _decode(self, job: dict, chunk: _Chunk) -> list[Decoded]:
        specs = chunk.specs
        if specs[0].start is None:
            spans = None
        elif chunk.cuts and chunk.cuts != SPEECH:
            spans = [(specs[0].start, specs[-1].end)]  # one stretch, cut by the transcription stage
        else:
            spans = [(s.start, s.end) for s in specs]
        r = self.resources
        tries = (r.decode_timeout_s, r.decode_retries, r.retry_backoff_s)
        video, audio = job["video_uri"], job["audio_uri"]
        decoded = decode_retrying(video, spans, self.decode_config, options_for(video, self.storage_options), *tries)
        if job["audio_uri"]:
            audio_config = dataclasses.replace(self.decode_config, audio_channel=job["audio_channel"])
            sounds = decode_retrying(audio, spans, audio_config, options_for(audio, self.storage_options), *tries)
            for d, sound in zip(decoded, sounds):
                d.audio, d.has_audio = sound.audio, sound.has_audio and sound.status == OK
                if sound.status != OK and d.status == OK:
                    note = f"warning: audio {redact_uri(job['audio_uri'])}: {sound.status}: {sound.error}"
                    d.error = f"{d.error}; {note}" if d.error else note  # keep a truncation warning
        if chunk.cuts and chunk.cuts != SPEECH and decoded[0].status != OK:
            # The stretch failed: every segment in it fails alike, and there is nothing to cut.
            d = decoded[0]
            chunk.cuts = ""
            return [_failed(s, d.status, d.error) for s in specs]
        return decoded

    def _table(self, job, chunk: _Chunk, decoded, duration, captions, started) -> pa.Table:
        elapsed_ms = (time.perf_counter() - started) * 1000
        # A stretch the transcription stage cuts is one row here; it says how many rows it becomes.
        # A stretch cut at the speech becomes as many as the speech has: the stage sets chunk_rows then.
        if chunk.cuts == SPEECH:
            specs, rows_of_chunk = chunk.specs, 1
        elif chunk.cuts:
            specs, rows_of_chunk = [SegmentSpec(chunk.specs[0].start, chunk.specs[-1].end)], len(chunk.specs)
        else:
            specs, rows_of_chunk = chunk.specs, len(decoded)
        rows = []
        # A chunk decodes several segments in one pass: each is charged its share by media seconds.
        shares = apportion(elapsed_ms, [d.end_s - d.start_s if math.isfinite(d.end_s) and d.end_s > d.start_s else 0.0
                                        for d in decoded])
        for k, (d, spec, ms) in enumerate(zip(decoded, specs, shares)):
            frames = d.frames if d.frames.ndim == 4 else np.zeros((0, 0, 0, 3), np.uint8)
            times = d.frame_times_s if len(d.frame_times_s) == len(frames) else np.zeros(len(frames))
            end = d.end_s if math.isfinite(d.end_s) else None
            audio = np.asarray(d.audio, np.float32)
            rows.append({
                "video_uri": job["video_uri"],
                "job_id": job_id(job),
                "chunk_index": chunk.chunk_index,
                "chunk_count": chunk.chunk_count,
                "chunk_row": k,
                "chunk_rows": rows_of_chunk,
                "utterance_id": spec.utterance_id,
                "start": d.start_s,
                "end": end,
                "video_duration_s": duration,
                "text": spec.text,
                "text_source": spec.text_source,
                "language": None,
                "asr_confidence": None,
                "captions": captions_json(captions, d.start_s, end),
                "speaker_side": job["speaker_side"] or None,
                "frames": pack(frames),
                "frame_times": pack(np.asarray(times, np.float64)),
                "frame_height": int(frames.shape[1]),
                "frame_width": int(frames.shape[2]),
                "frames_sampled": int(frames.shape[0]),
                "waveform": pack(audio),
                "waveform_samples": int(audio.shape[0]),
                "has_video": bool(d.has_video),
                "has_audio": bool(d.has_audio),
                "status": d.status,
                "error": d.error,
                "decode_ms": float(ms),
                "asr_ms": 0.0,
                "cuts": chunk.cuts if d.status == OK else "",
            })
        return pa.Table.from_pylist(rows, schema=DECODED_SCHEMA)


def captions_json(captions: list[Segment], start: float, end: float | None) -> str:
    """The timed cues overlapping [start, end) and every untimed one, as JSON."""
    cues = [[c.start, c.end, c.text] for c in captions
            if c.start is None or c.end is None or overlaps(c.start, c.end, start, end)]
    return json.dumps(cues) if cues else ""


def _failed(spec: SegmentSpec, kind: str, message: str) -> Decoded:
    empty = np.zeros((0, 0, 0, 3), np.uint8)
    start = 0.0 if spec.start is None else spec.start
    end = math.nan if spec.end is None else spec.end
    return Decoded(start, end, empty, np.zeros(0), np.zeros(0, np.float32), False, False, kind, message)


def _chunks(specs: list[SegmentSpec], chunk_s: float) -> Iterator[list[SegmentSpec]]:
    """Consecutive groups of segments spanning at most ``chunk_s`` seconds of media each."""
    chunk: list[SegmentSpec] = []
    for spec in specs:
        if chunk and spec.start is not None and spec.end is not None and chunk[0].start is not None \
                and max(spec.end, max(s.end for s in chunk)) - min(chunk[0].start, spec.start) > chunk_s:
            yield chunk
            chunk = []
        chunk.append(spec)
    if chunk:
        yield chunk
