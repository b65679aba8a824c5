"""The speaker stage: each row's waveform -> its pieces of speech and their voice embeddings.

A row's speech is cut at pauses and voice changes (:func:`fv2es.media.diarize.pieces`) and
each piece embedded by the packaged GE2E voice encoder (:mod:`fv2es.media.voices`). It runs
right after decoding, before the transcription stage cuts a chunk into segments: a chunk cut at
its speech (``segments.mode=auto``) is also cut where the voice changes (:func:`changes_of`),
and each segment cut from a chunk keeps the pieces inside it (:func:`voice_in`). Labels need
the whole video (the same voice in two segments is one speaker), so they are given where a job
is whole: :func:`fv2es.pipeline.numbering.number` clusters the pieces of all the job's segments
(:func:`fv2es.media.diarize.label_job`) into ``speaker`` and ``speaker_turns`` and drops the
embeddings.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from fv2es.failures import OK
from fv2es.media.diarize import FRAME_S, SpeakersConfig, pieces, speech_frames, voice_changes
from fv2es.pipeline.packing import pack, unpack, unpack_waveform
from fv2es.pipeline.spec import MediaJob, StageSpec

VOICE_COLUMNS = ("voice_spans", "voice_embeddings")  # between this stage and the numbering only


class Speakers:
    """Rows with ``waveform`` -> rows with ``voice_spans`` (float32 (k, 2): each piece's start and
    end, seconds from the media start), ``voice_embeddings`` (float16 (k, 256)) and ``speaker_ms``;
    null without audio, and all null with ``speakers.mode=off``.

    Stateless but for the encoder, built on first use: run as tasks
    (``map_batches(Speakers(config), batch_size=None)``), between decoding and transcription.
    """

    name, title, pool = "speakers", "speaker tasks", None
    config_sections = ("speakers",)
    columns = ("speaker", "speaker_turns")  # given by the numbering, from this stage's pieces
    timing = ("speaker_ms",)

    @classmethod
    def enabled(cls, cfg) -> bool:
        """Whether a job with ``cfg`` runs this stage (always: with ``speakers.mode=off`` it only
        writes null columns, so that every output has the same columns)."""
        return True

    @classmethod
    def spec(cls, job: MediaJob) -> StageSpec:
        """Tasks over whole blocks, with the spectrogram's CPUs."""
        return StageSpec(cls.name, cls, (job.cfg.speakers, job.cfg.decode.sample_rate),
                         cpus=job.cfg.resources.spectrogram_cpus)

    def __init__(self, config: SpeakersConfig, sample_rate: int = 16000):
        self.config, self.sample_rate = config, sample_rate
        self._encoder = None

    def __getstate__(self):  # shipped to tasks without the encoder: each builds its own
        return {**self.__dict__, "_encoder": None}

    @property
    def encoder(self):
        if self._encoder is None:
            from fv2es.media.voices import VoiceEncoder

            self._encoder = VoiceEncoder()
        return self._encoder

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.select(["waveform", "start", "status", "has_audio"]).to_pylist()
        spans, embs, ms = [], [], []
        for row in rows:
            started = time.perf_counter()
            s, e = self.segment(row)
            spans.append(pack(s) if s is not None else None)
            embs.append(pack(e) if e is not None else None)
            ms.append((time.perf_counter() - started) * 1000 if self.config.mode != "off" else None)
        table = batch.append_column("voice_spans", pa.array(spans, pa.binary()))
        table = table.append_column("voice_embeddings", pa.array(embs, pa.binary()))
        return table.append_column("speaker_ms", pa.array(ms, pa.float64()))

    def segment(self, row: dict) -> tuple[np.ndarray | None, np.ndarray | None]:
        """One row's pieces (seconds from the media start) and embeddings; (None, None) without audio."""
        if (self.config.mode == "off" or row.get("status", OK) != OK or not row.get("has_audio")
                or not row.get("waveform")):
            return None, None
        audio = np.asarray(unpack_waveform(row), np.float32)
        if self.sample_rate != 16000:
            import torch
            import torchaudio

            audio = torchaudio.functional.resample(torch.from_numpy(audio.copy()), self.sample_rate, 16000).numpy()
        found, emb = pieces(speech_frames(audio, self.config), audio, self.encoder, self.config)
        offset = row.get("start") or 0.0
        times = np.asarray(found, np.float32).reshape(-1, 2) * FRAME_S + offset
        return times.astype(np.float32), emb.astype(np.float16)


def voices(row: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """A row's pieces ((k, 2) seconds) and their embeddings ((k, 256) float32); None without."""
    if not row.get("voice_spans"):
        return None
    return (unpack(row["voice_spans"], (2,), np.float32),
            unpack(row["voice_embeddings"], (256,), np.float16).astype(np.float32))


def changes_of(row: dict, config: SpeakersConfig) -> list[tuple[float, float]]:
    """Where the voice changes in a row (:func:`fv2es.media.diarize.voice_changes` on its pieces)."""
    found = voices(row)
    return voice_changes(*found, config.threshold) if found is not None else []


def voice_in(row: dict, start: float, end: float) -> dict:
    """The voice columns of the part [start, end) of a row: the pieces overlapping it, clipped to
    it (with their embeddings); unchanged (null) for a row without pieces."""
    found = voices(row)
    if found is None:
        return {c: row.get(c) for c in VOICE_COLUMNS}
    spans, emb = found
    keep = (spans[:, 1] > start) & (spans[:, 0] < end)
    clipped = np.clip(spans[keep], start, end).astype(np.float32)
    return {"voice_spans": pack(clipped), "voice_embeddings": pack(emb[keep].astype(np.float16))}
