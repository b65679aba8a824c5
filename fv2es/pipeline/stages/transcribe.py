"""The transcription stage: speech-to-text for rows without text, and cutting at the speech.

Three kinds of row arrive from :class:`~fv2es.pipeline.stages.decode.Decode`:

- a final segment (``cuts`` empty): transcribed when it wants a transcript
  (:func:`~fv2es.pipeline.plan.needs_transcript`), else passed through;
- a chunk of adjacent planned segments (``cuts`` = JSON of them, e.g. fixed windows): the
  stretch is transcribed once, then cut; each segment gets the words that overlap it;
- a chunk to cut at the speech (``cuts`` = ``"speech"``): the utterances the recogniser finds,
  merged or split to [``min_segment_s``, ``max_segment_s``], become the segments. The silent
  stretches between them are not scored. A chunk with no speech at all (silence, music, noise,
  or no audio stream) is scored as it is, in pieces of at most ``max_segment_s``, with
  ``text_source`` ``none``, so a silent video still gets its face and voice scores.

Rows cut at speech carry ``chunk_index``/``chunk_count``; their ``segment_index`` and
``segment_count`` count within the chunk until :class:`SpeechNumbering` (on the driver, once
every chunk of a video is in) numbers them over the whole video.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fv2es.asr.config import AsrConfig
from fv2es.asr.segments import speech_segments, text_of, words_in_span
from fv2es.config import SegmentsConfig, to_dict
from fv2es.data.transcripts import Segment
from fv2es.media.failures import OK
from fv2es.pipeline.packing import pack, unpack_frame_times, unpack_frames, unpack_waveform
from fv2es.pipeline.plan import ASR, NO_TEXT, needs_transcript, windows
from fv2es.pipeline.stages.decode import SPEECH, captions_json
from fv2es.pipeline.timing import apportion


class Transcribe:
    """Rows with a waveform -> rows with the spoken words as ``text`` (``text_source`` ``asr``).

    Run as an actor pool (``map_batches(Transcribe, fn_constructor_args=..., compute=...)``);
    the Whisper model is loaded once per actor, on first use (a run whose every row has its
    text never loads it). ``device`` "cuda" runs it in float16, "cpu" in int8, unless
    ``asr.compute_type`` says otherwise.
    """

    def __init__(self, asr: AsrConfig, segments: SegmentsConfig, sample_rate: int, device: str = "cpu",
                 threads: int = 1, storage_options: dict | None = None):
        self.asr, self.segments, self.sample_rate = asr, segments, sample_rate
        self.device, self.threads, self.storage_options = device, max(1, threads), storage_options or {}
        self._engine = None

    def _transcriber(self):
        if self._engine is None:
            from fv2es.asr.engine import Transcriber

            config = self.asr if self.device == "cuda" else dataclasses.replace(self.asr, cpu_threads=self.threads)
            self._engine = Transcriber(config, self.device, self.storage_options)
        return self._engine

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = []
        for row in batch.to_pylist():
            rows.extend(self.process(row))
        return pa.Table.from_pylist(rows, schema=batch.schema)

    def process(self, row: dict) -> list[dict]:
        """The output rows of one input row (several when it is a chunk to cut)."""
        if row["status"] != OK:
            return [row]
        cuts = row["cuts"] or ""
        if not cuts:
            if not needs_transcript(self.asr.mode, row["text_source"]) or not _has_audio(row):
                return [row]
            started = time.perf_counter()
            transcript = self._transcribe(row)
            out = {**row, "asr_ms": (time.perf_counter() - started) * 1000}
            _set_text(out, transcript, transcript.words)
            return [out]
        started = time.perf_counter()
        transcript = self._transcribe(row) if _has_audio(row) else None
        start, end = row["start"], _row_end(row, self.sample_rate)
        if cuts == SPEECH:
            spans = self._speech_spans(transcript, start, end)
            if not spans:  # no speech in this stretch: scored as it is, without text
                spans = windows(start, end, self.segments.max_segment_s)
            planned = [[j, s, e, None, "", NO_TEXT] for j, (s, e) in enumerate(spans)]
        else:
            planned = json.loads(cuts)
        # The stretch's transcription and decode times, split over its segments by their seconds.
        seconds = [e - s for _, s, e, *_ in planned]
        asr_ms = apportion((time.perf_counter() - started) * 1000, seconds)
        decode_ms = apportion(row["decode_ms"] or 0.0, seconds)
        out = []
        for k, (index, s, e, uid, text, source) in enumerate(planned):
            piece = _slice(row, s, e, self.sample_rate)
            piece.update(segment_index=index, utterance_id=uid, text=text, text_source=source, cuts="",
                         asr_ms=float(asr_ms[k]), decode_ms=float(decode_ms[k]))
            if cuts == SPEECH:
                piece["segment_count"] = len(planned)
            if transcript is not None and needs_transcript(self.asr.mode, source):
                _set_text(piece, transcript, _words_in(transcript, s, e))
            out.append(piece)
        return out

    def _transcribe(self, row: dict):
        audio = np.array(unpack_waveform(row))  # writable: the engine may normalise in place
        return self._transcriber()(audio, row["start"] or 0.0)

    def _speech_spans(self, transcript, start: float, end: float) -> list[tuple[float, float]]:
        if transcript is None or not transcript.words:
            return []
        spans = speech_segments([(u.start, u.end) for u in transcript.utterances if u.words],
                                self.segments.min_segment_s, self.segments.max_segment_s, transcript.words)
        clipped = [(max(start, s), min(end, e)) for s, e in spans]
        return [(s, e) for s, e in clipped if e > s]


def _has_audio(row: dict) -> bool:
    return bool(row["has_audio"]) and (row["waveform_samples"] or 0) > 0


def _row_end(row: dict, sample_rate: int) -> float:
    """The row's end; a whole-file row of unknown duration ends where its audio or frames do."""
    if row["end"] is not None and math.isfinite(row["end"]):
        return row["end"]
    times = unpack_frame_times(row)
    last_frame = float(times[-1]) if len(times) else row["start"]
    return max(row["start"] + (row["waveform_samples"] or 0) / sample_rate, last_frame)


def _words_in(transcript, start: float, end: float) -> list:
    return words_in_span(transcript.words, start, end)


def _set_text(row: dict, transcript, words: list) -> None:
    """The words heard in a segment become its text; none heard leaves its text as it was."""
    text = text_of(words) if words else ""
    if not text.strip():
        return
    row.update(text=text, text_source=ASR, language=transcript.language,
               asr_confidence=float(np.mean([w.probability for w in words])))


def _slice(row: dict, start: float, end: float, sample_rate: int) -> dict:
    """The part of a decoded stretch in [start, end): its frames (by presentation time) and audio."""
    times = unpack_frame_times(row)
    frames = unpack_frames(row)
    keep = (times >= start - 1e-6) & (times < end - 1e-6)
    kept = frames[keep] if len(frames) else frames
    audio = unpack_waveform(row)
    a = min(len(audio), max(0, round((start - row["start"]) * sample_rate)))
    b = min(len(audio), max(a, round((end - row["start"]) * sample_rate)))
    height, width = (row["frame_height"], row["frame_width"]) if len(kept) else (0, 0)
    return {
        **row,
        "start": start,
        "end": end,
        "frames": pack(kept),
        "frame_times": pack(times[keep]),
        "frame_height": height,
        "frame_width": width,
        "frames_sampled": int(len(kept)),
        "waveform": pack(audio[a:b]),
        "waveform_samples": int(b - a),
        "captions": captions_json([Segment(*c) for c in json.loads(row["captions"] or "[]")], start, end),
    }


class SpeechNumbering:
    """Driver side of cutting at speech: hold a video's rows until every chunk of it is in, then
    number its segments over the whole video (``segment_index`` 0..n-1, ``segment_count`` n).

    Rows not cut at speech (``chunk_index`` < 0) pass straight through.
    """

    def __init__(self):
        self.pending: dict[str, list[pa.Table]] = {}  # by job id (a video can be several jobs)

    def add(self, batch: pa.Table) -> list[pa.Table]:
        """Tables ready for the output: ``batch``'s plain rows, and any video now complete."""
        chunked = pc.greater_equal(batch.column("chunk_index"), 0)
        ready = [batch.filter(pc.invert(chunked))]
        held = batch.filter(chunked)
        keys = held.column("job_id").to_pylist()
        for key in dict.fromkeys(keys):
            self.pending.setdefault(key, []).append(held.filter(pa.array([k == key for k in keys])))
            table = pa.concat_tables(self.pending[key])
            if _all_chunks_in(table):
                del self.pending[key]
                table = table.sort_by([("chunk_index", "ascending"), ("segment_index", "ascending")])
                n = table.num_rows
                table = table.set_column(table.schema.get_field_index("segment_index"), "segment_index",
                                         pa.array(np.arange(n, dtype=np.int32)))
                table = table.set_column(table.schema.get_field_index("segment_count"), "segment_count",
                                         pa.array(np.full(n, n, dtype=np.int32)))
                ready.append(table)
        return [t for t in ready if t.num_rows]

    def incomplete(self) -> list[str]:
        """Jobs (their ids) with chunks still missing (empty after a full run)."""
        return list(self.pending)


def _all_chunks_in(table: pa.Table) -> bool:
    chunks = table.column("chunk_index").to_pylist()
    counts = table.column("segment_count").to_pylist()
    total = table.column("chunk_count")[0].as_py()
    seen: dict[int, int] = {}
    expected: dict[int, int] = {}
    for k, c in zip(chunks, counts):
        seen[k] = seen.get(k, 0) + 1
        expected[k] = c
    return len(seen) == total and all(seen[k] == expected[k] for k in seen)


def asr_summary(asr, utterances, examples: pa.Table) -> dict:
    """What speech-to-text did for a preprocessing run (its ``metadata.json`` ``asr`` entry): the
    settings, how many utterances came without text, and how many of those it gave text to."""
    without = {u.id for u in utterances if not (u.text or "").strip()}
    texts = dict(zip(examples.column("id").to_pylist(), examples.column("text").to_pylist()))
    filled = sum(1 for i in without if (texts.get(i) or "").strip())
    return {"config": to_dict(asr), "utterances_without_text": len(without), "filled_by_asr": filled}
