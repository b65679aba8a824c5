"""Per-batch stages of the media pipeline, shared by the scoring and preprocessing jobs.

Each is a small picklable class (heavy state built in ``__init__``) whose ``__call__`` takes and
returns a pyarrow Table, so the same class runs in ``Dataset.map_batches`` and in a unit test.
Rows carry their arrays as bytes plus counts (:mod:`fv2es.pipeline.packing`) and always carry
``status`` / ``error``: a bad input becomes a row, never an exception out of a stage.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
from fsspec.core import url_to_fs

from fv2es.config import ScoreConfig
from fv2es.data.transcripts import find_sidecar, read_sidecar
from fv2es.media.decode import DecodeConfig, Decoded
from fv2es.media.faces import FaceConfig
from fv2es.media.failures import OK, MediaError
from fv2es.media.isolate import decode_isolated, probe_isolated
from fv2es.media.spectrogram import SpectrogramConfig, SpectrogramPieces
from fv2es.pipeline.packing import pack
from fv2es.pipeline.plan import SegmentSpec, given_segments, plan_segments

# One row per segment after decoding. Explicit, so every block has the same schema.
DECODED_SCHEMA = pa.schema([
    ("video_uri", pa.string()),
    ("segment_index", pa.int32()),
    ("segment_count", pa.int32()),
    ("utterance_id", pa.string()),
    ("start", pa.float64()),
    ("end", pa.float64()),
    ("video_duration_s", pa.float64()),
    ("text", pa.string()),
    ("speaker_side", pa.string()),
    ("frames", pa.binary()),  # uint8 (frames_sampled, frame_height, frame_width, 3)
    ("frame_height", pa.int32()),
    ("frame_width", pa.int32()),
    ("frames_sampled", pa.int32()),
    ("pieces", pa.binary()),  # float32 (piece_count, 4, 32, 32)
    ("piece_count", pa.int32()),
    ("has_video", pa.bool_()),
    ("has_audio", pa.bool_()),
    ("status", pa.string()),
    ("error", pa.string()),
    ("decode_ms", pa.float64()),
])


def _job_from_row(row: dict) -> dict:
    return {**row, "audio_channel": None if row["audio_channel"] < 0 else row["audio_channel"]}


class DecodeStage:
    """Job rows (one per video) -> segment rows: planned, decoded, audio cut into spectrogram pieces.

    Meant for ``map_batches(DecodeStage(...), batch_size=1, batch_format="pyarrow")``: it is a
    generator, yielding one table per decoded chunk of at most ``score.chunk_s`` media seconds,
    so a long video never sits in memory whole. Decoding runs in a child process
    (:mod:`fv2es.media.isolate`), so a decoder crash fails one video, not the worker.
    """

    def __init__(self, decode: DecodeConfig, spectrogram: SpectrogramConfig, score: ScoreConfig,
                 storage_options: dict | None = None):
        self.decode_config = decode
        self.score = score
        self.storage_options = storage_options or {}
        self.pieces = SpectrogramPieces(spectrogram)

    def __call__(self, batch: pa.Table) -> Iterator[pa.Table]:
        for row in batch.to_pylist():
            yield from self.process(_job_from_row(row))

    def process(self, job: dict) -> Iterator[pa.Table]:
        start_time = time.perf_counter()
        uri, given = job["video_uri"], given_segments(job)
        try:
            info = probe_isolated(uri, self.storage_options, self.score.decode_timeout_s)
        except MediaError as e:
            specs = given or [SegmentSpec(None, None)]
            failed = [_failed(s, e.kind, e.message) for s in specs]
            yield self._table(job, specs, failed, None, start_time)
            return
        captions, warning = self._captions(uri, given)
        duration = info.duration_s if info.duration_s and math.isfinite(info.duration_s) else None
        if duration is None and (given is None or any(s.start is None and s.end is None for s in given)):
            # No declared duration: one pass over the whole file finds where it ends.
            text = given[0].text if given else " ".join(c.text for c in captions)
            specs = [SegmentSpec(None, None, text, given[0].utterance_id if given else None)]
        else:
            specs = plan_segments(given, duration or 0.0, self.score, captions)
        first = 0
        for chunk in _chunks(specs, self.score.chunk_s):
            decoded = self._decode(job, chunk)
            if warning:
                for d in decoded:
                    d.error = d.error or warning
            yield self._table(job, specs, decoded, duration, start_time, first)
            first += len(chunk)
            start_time = time.perf_counter()  # the probe and captions are charged to the first chunk

    def _captions(self, uri: str, given) -> tuple[list, str]:
        if given is not None and all(s.text for s in given):
            return [], ""
        try:
            fs = url_to_fs(uri, **self.storage_options)[0]
            sidecar = find_sidecar(uri, fs)
            return (read_sidecar(sidecar, fs) if sidecar else []), ""
        except MediaError as e:  # an unreadable caption file costs the text, not the video
            return [], f"warning: {e.kind}: {e.message}; text taken as absent"

    def _decode(self, job: dict, chunk: list[SegmentSpec]) -> list[Decoded]:
        spans = None if chunk[0].start is None else [(s.start, s.end) for s in chunk]
        timeout = self.score.decode_timeout_s
        if not job["audio_uri"]:
            return decode_isolated(job["video_uri"], spans, self.decode_config, self.storage_options, timeout)
        decoded = decode_isolated(job["video_uri"], spans, self.decode_config, self.storage_options, timeout)
        audio_config = dataclasses.replace(self.decode_config, audio_channel=job["audio_channel"])
        sounds = decode_isolated(job["audio_uri"], spans, audio_config, self.storage_options, timeout)
        for d, sound in zip(decoded, sounds):
            d.audio, d.has_audio = sound.audio, sound.has_audio and sound.status == OK
            if sound.status != OK and d.status == OK:
                d.error = f"warning: audio {job['audio_uri']}: {sound.status}: {sound.error}"
        return decoded

    def _table(self, job, specs, decoded, duration, started, first: int = 0) -> pa.Table:
        pieces = self.pieces.many([d.audio for d in decoded])
        elapsed_ms = (time.perf_counter() - started) * 1000
        rows = []
        for k, (d, p) in enumerate(zip(decoded, pieces)):
            spec = specs[first + k]
            frames = d.frames if d.frames.ndim == 4 else np.zeros((0, 0, 0, 3), np.uint8)
            rows.append({
                "video_uri": job["video_uri"],
                "segment_index": first + k,
                "segment_count": len(specs),
                "utterance_id": spec.utterance_id,
                "start": d.start_s,
                "end": d.end_s if math.isfinite(d.end_s) else None,
                "video_duration_s": duration,
                "text": spec.text,
                "speaker_side": job["speaker_side"] or None,
                "frames": pack(frames),
                "frame_height": int(frames.shape[1]),
                "frame_width": int(frames.shape[2]),
                "frames_sampled": int(frames.shape[0]),
                "pieces": pack(p),
                "piece_count": int(p.shape[0]),
                "has_video": bool(d.has_video),
                "has_audio": bool(d.has_audio),
                "status": d.status,
                "error": d.error,
                "decode_ms": elapsed_ms / max(1, len(decoded)),
            })
        return pa.Table.from_pylist(rows, schema=DECODED_SCHEMA)


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


class FaceStage:
    """Segment rows with frames -> rows with 48x48 face crops (``faces``), the per-frame
    ``face_mask`` (1 = MTCNN found a face, 0 = centre-crop fallback) and ``faces_found``.

    Run as an actor pool (``map_batches(FaceStage, fn_constructor_args=..., concurrency=n)``);
    MTCNN is built once per actor, on ``config.device``. The speaker side of a row, when given
    (IEMOCAP), picks the face in that half of the frame.
    """

    def __init__(self, config: FaceConfig, threads: int = 1):
        import torch

        from fv2es.media.faces import FaceCropper

        if not config.device.startswith("cuda"):
            torch.set_num_threads(max(1, threads))
        self.config = config
        self.croppers = {config.select: FaceCropper(config)}
        self._factory = FaceCropper

    def _cropper(self, select: str):
        if select not in self.croppers:
            self.croppers[select] = self._factory(dataclasses.replace(self.config, select=select))
        return self.croppers[select]

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        faces, masks, found, times = [], [], [], []
        for row in rows:
            start = time.perf_counter()
            n = row["frames_sampled"]
            if n == 0:
                faces.append(b"")
                masks.append(b"")
                found.append(0)
            else:
                # bytearray: a writable copy (torch warns on, and may not write to, read-only buffers)
                frames = np.frombuffer(bytearray(row["frames"]), np.uint8).reshape(
                    n, row["frame_height"], row["frame_width"], 3)
                out = self._cropper(row["speaker_side"] or self.config.select)(frames)
                faces.append(pack(out.crops))
                masks.append(pack(out.face_found.astype(np.uint8)))
                found.append(int(out.face_found.sum()))
            times.append((time.perf_counter() - start) * 1000)
        table = batch.drop_columns(["frames", "frame_height", "frame_width"])
        table = table.append_column("faces", pa.array(faces, pa.binary()))
        table = table.append_column("face_mask", pa.array(masks, pa.binary()))  # uint8 per frame: 1 = face found
        table = table.append_column("faces_found", pa.array(found, pa.int32()))
        return table.append_column("face_ms", pa.array(times, pa.float64()))
