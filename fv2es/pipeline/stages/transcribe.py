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
  ``text_source`` ``none``, so a silent video still gets its face and voice scores. Either way
  the chunk's segments are then cut again where the voice changes (the speaker stage's pieces of
  the chunk, clustered: :func:`~fv2es.asr.segments.split_at_changes`), so that each has one speaker.

Each segment cut from a chunk keeps the speaker stage's pieces inside it, and its share of the
chunk's decode, transcription and speaker times.

A chunk cut into segments says how many rows it became (``chunk_row`` / ``chunk_rows``);
:class:`fv2es.pipeline.numbering.SegmentNumbering` numbers them over the whole job once every chunk is in.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time

import numpy as np
import pyarrow as pa

from fv2es.asr.config import AsrConfig
from fv2es.asr.segments import speech_segments, split_at_changes, text_of, words_in_span
from fv2es.config import SegmentsConfig, to_dict
from fv2es.data.transcripts import Segment
from fv2es.failures import OK
from fv2es.media.diarize import SpeakersConfig
from fv2es.pipeline.packing import pack, unpack_frame_times, unpack_frames, unpack_waveform
from fv2es.pipeline.plan import ASR, NO_TEXT, needs_transcript, windows
from fv2es.pipeline.spec import MediaJob, StageSpec, actor_spec
from fv2es.pipeline.stages.decode import SPEECH, captions_json
from fv2es.pipeline.stages.speakers import changes_of, voice_in
from fv2es.pipeline.timing import apportion
from fv2es.storage import options_for


class Transcribe:
    """Rows with a waveform -> rows with the spoken words as ``text`` (``text_source`` ``asr``).

    Run as an actor pool (``map_batches(Transcribe, fn_constructor_args=..., compute=...)``);
    the Whisper model is loaded once per actor, on first use (a run whose every row has its
    text never loads it). ``device`` "cuda" runs it in float16, "cpu" in int8, unless
    ``asr.compute_type`` says otherwise.
    """

    name, title, pool = "transcribe", "speech-to-text", "asr"
    config_sections = ("asr",)
    columns = ("language", "asr_confidence")
    timing = ("asr_ms",)

    @classmethod
    def enabled(cls, cfg) -> bool:
        """Whether a job with ``cfg`` runs this stage: unless ``asr.mode`` is ``never``."""
        return cfg.asr.mode != "never"

    @classmethod
    def spec(cls, job: MediaJob) -> StageSpec | None:
        """An actor pool (on CUDA when given GPUs); none when ``asr.mode`` is ``never``."""
        cfg, r = job.cfg, job.cfg.resources
        if not cls.enabled(cfg):
            return None
        return actor_spec(cls, job, (cfg.asr, job.segments, cfg.decode.sample_rate), {
            "device": "cuda" if r.asr_gpus > 0 else "cpu", "threads": max(1, round(r.asr_cpus)),
            "storage_options": options_for(cfg.asr.model, job.asr_storage_options), "speakers": cfg.speakers})

    def __init__(self, asr: AsrConfig, segments: SegmentsConfig, sample_rate: int, device: str = "cpu",
                 threads: int = 1, storage_options: dict | None = None, speakers: SpeakersConfig | None = None):
        self.asr, self.segments, self.sample_rate = asr, segments, sample_rate
        self.speakers = speakers or SpeakersConfig()  # its threshold, for the cuts at voice changes
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
            spans = split_at_changes(spans, changes_of(row, self.speakers))  # one speaker a segment
            planned = [[s, e, None, "", NO_TEXT] for s, e in spans]
        else:
            planned = json.loads(cuts)
        # The stretch's transcription and decode times, split over its segments by their seconds.
        seconds = [e - s for s, e, *_ in planned]
        asr_ms = apportion((time.perf_counter() - started) * 1000, seconds)
        decode_ms = apportion(row["decode_ms"] or 0.0, seconds)
        speaker_ms = apportion(row.get("speaker_ms") or 0.0, seconds) if row.get("speaker_ms") is not None else None
        out = []
        for k, (s, e, uid, text, source) in enumerate(planned):
            piece = _slice(row, s, e, self.sample_rate)
            # The chunk's place among the job's rows (fv2es.pipeline.numbering): row k of the cut.
            piece.update(chunk_row=k, chunk_rows=len(planned), utterance_id=uid, text=text, text_source=source,
                         cuts="", asr_ms=float(asr_ms[k]), decode_ms=float(decode_ms[k]))
            if "voice_spans" in row:  # the speaker stage ran (first): the pieces inside this segment
                piece.update(voice_in(row, s, e), speaker_ms=None if speaker_ms is None else float(speaker_ms[k]))
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


def asr_summary(asr, utterances, examples: pa.Table) -> dict:
    """What speech-to-text did for a preprocessing run (its ``metadata.json`` ``asr`` entry): the
    settings, how many utterances came without text, and how many of those it gave text to."""
    without = {u.id for u in utterances if not (u.text or "").strip()}
    texts = dict(zip(examples.column("id").to_pylist(), examples.column("text").to_pylist()))
    filled = sum(1 for i in without if (texts.get(i) or "").strip())
    return {"config": to_dict(asr), "utterances_without_text": len(without), "filled_by_asr": filled}
