"""The face stage: each row's frames -> 48x48 crops of one face track (MTCNN, centre-crop fallback).

A row's faces are linked into tracks over its frames (:mod:`fv2es.media.tracks`) and one track
gives all its crops. With ``faces.select=speaker`` (the default) and more than one track, the
stage decodes the segment again, densely (``faces.sync_interval_ms``, small frames, with its
audio), and takes the track whose mouth moves with the speech (:mod:`fv2es.media.speaker`); the
model still gets the frames sampled at ``decode.img_interval_ms``. One track, no audio, no
speech or no mouth in step with it: the largest track. IEMOCAP's ``speaker_side`` wins: the
largest track in that half of the frame.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pyarrow as pa

from fv2es.failures import OK
from fv2es.media.decode import DecodeConfig
from fv2es.media.faces import FaceConfig
from fv2es.pipeline.packing import pack
from fv2es.pipeline.spec import MediaJob, StageSpec, actor_spec

FRAME_COLUMNS = ["frames", "frame_times", "frame_height", "frame_width"]
_READ = ["frames", "frame_times", "frame_height", "frame_width", "frames_sampled", "speaker_side", "video_uri",
         "start", "end", "has_audio", "status"]


class Faces:
    """Segment rows with frames -> rows with 48x48 face crops (``faces``), the per-frame
    ``face_mask`` (1 = MTCNN found the chosen track's face, 0 = centre-crop fallback),
    ``faces_found``, and which face it was: ``face_tracks`` (tracks in the segment), ``face_track``
    (the chosen one, numbered left to right), ``face_box`` (its median box, x1 y1 x2 y2 as fractions
    of the frame) and ``face_select`` (the rule that chose it).

    Run as an actor pool (``map_batches(Faces, fn_constructor_args=..., compute=...)``);
    MTCNN is built once per actor, on ``config.device``. ``decode``, ``storage_options`` and
    ``tries`` (timeout, retries, backoff) are for the dense second decode of ``select=speaker``.
    The frame columns are dropped.
    """

    name, title, pool = "faces", "faces", "face"
    config_sections = ("faces",)
    columns = ("faces_found", "face_tracks", "face_track", "face_box", "face_select")
    timing = ("face_ms", "face_sync_ms")

    @classmethod
    def enabled(cls, cfg) -> bool:
        """Whether a job with ``cfg`` runs this stage (always)."""
        return True

    @classmethod
    def spec(cls, job: MediaJob) -> StageSpec:
        """An actor pool; MTCNN on CUDA when the pool is given GPUs."""
        r = job.cfg.resources
        faces = job.cfg.faces if r.face_gpus == 0 else dataclasses.replace(job.cfg.faces, device="cuda")
        return actor_spec(cls, job, (faces, max(1, round(r.face_cpus))), {
            "decode": job.cfg.decode, "storage_options": job.storage_options,
            "tries": (r.decode_timeout_s, r.decode_retries, r.retry_backoff_s),
            "per_person": bool(getattr(job.segments, "per_person", False))})

    def __init__(self, config: FaceConfig, threads: int = 1, decode: DecodeConfig | None = None,
                 storage_options: dict | None = None, tries: tuple = (600.0, 0, 1.0), per_person: bool = False):
        import torch

        from fv2es.media.faces import FaceCropper

        if not config.device.startswith("cuda"):
            torch.set_num_threads(max(1, threads))
        self.config = config
        self.croppers = {config.select: FaceCropper(config)}
        self._factory = FaceCropper
        # The dense decode: the mouth's motion wants frames every sync_interval_ms, and small ones.
        self.sync_decode = dataclasses.replace(decode or DecodeConfig(), img_interval_ms=config.sync_interval_ms,
                                               max_side=config.sync_max_side)
        self.storage_options = storage_options or {}
        self.tries = tries
        self.per_person = per_person

    def _cropper(self, select: str):
        if select not in self.croppers:
            self.croppers[select] = self._factory(dataclasses.replace(self.config, select=select))
        return self.croppers[select]

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.select([c for c in _READ if c in batch.column_names]).to_pylist()
        out: dict[str, list] = {k: [] for k in ("faces", "face_mask", "faces_found", "face_tracks", "face_track",
                                                "face_box", "face_select", "face_ms", "face_sync_ms")}
        taken, parts = [], []  # per output row: its input row, and (its person, of how many)
        for i, row in enumerate(rows):
            start, sync = time.perf_counter(), [0.0]
            n = row["frames_sampled"]
            crops = frames = cropper = None
            if n:
                # bytearray: a writable copy (torch warns on, and may not write to, read-only buffers)
                frames = np.frombuffer(bytearray(row["frames"]), np.uint8).reshape(
                    n, row["frame_height"], row["frame_width"], 3)
                cropper = self._cropper(row.get("speaker_side") or self.config.select)
                crops = cropper.segment(frames, self._speaker_rule(row, frames.shape, sync))
            h, w = (row["frame_height"], row["frame_width"]) if n else (1, 1)
            people = self._people(crops, frames, cropper)
            for k, (these, chosen, rule) in enumerate(people):
                out["faces"].append(pack(these.crops) if these else b"")
                out["face_mask"].append(pack(these.face_found.astype(np.uint8)) if these else b"")
                out["faces_found"].append(int(these.face_found.sum()) if these else 0)
                out["face_tracks"].append(len(crops.tracks) if crops else 0)
                out["face_track"].append(chosen.index if chosen else None)
                out["face_box"].append((chosen.median_box() / [w, h, w, h]).round(4).tolist() if chosen else None)
                out["face_select"].append(rule)
                out["face_ms"].append((time.perf_counter() - start) * 1000 / len(people))
                out["face_sync_ms"].append(sync[0] / len(people))
                taken.append(i)
                parts.append((k, len(people)))
        table = batch.drop_columns([c for c in FRAME_COLUMNS if c in batch.column_names])
        if self.per_person:
            table = table.take(pa.array(taken, pa.int64()))
            table = table.append_column("person", pa.array([p for p, _ in parts], pa.int32()))
            table = table.append_column("persons", pa.array([m for _, m in parts], pa.int32()))
        types = {"faces": pa.binary(), "face_mask": pa.binary(), "faces_found": pa.int32(), "face_tracks": pa.int32(),
                 "face_track": pa.int32(), "face_box": pa.list_(pa.float32()), "face_select": pa.string(),
                 "face_ms": pa.float64(), "face_sync_ms": pa.float64()}
        for name, values in out.items():
            table = table.append_column(name, pa.array(values, types[name]))
        return table

    def _people(self, crops, frames, cropper) -> list[tuple]:
        """The rows one segment becomes: (crops, track, rule) of the chosen track; with
        ``per_person`` and more than one track, of every track left to right (the chosen one by its
        rule, the others ``person``)."""
        chosen = crops.tracks[crops.track] if crops and crops.track >= 0 else None
        if not (self.per_person and crops and len(crops.tracks) > 1):
            return [(crops, chosen, (crops.rule or None) if crops else None)]
        return [(crops, t, crops.rule) if t is chosen else (cropper.track_crops(frames, t), t, "person")
                for t in crops.tracks]

    def _speaker_rule(self, row: dict, shape: tuple, spent: list):
        """The ``speaker`` rule of one row for :meth:`FaceCropper.segment` (None without audio)."""
        if not row.get("has_audio") or not row.get("video_uri") or row.get("status", OK) != OK:
            return None

        def rule(tracks) -> int | None:
            started = time.perf_counter()
            try:
                return self._speaker(row, shape, tracks)
            finally:
                spent[0] += (time.perf_counter() - started) * 1000

        return rule

    def _speaker(self, row: dict, shape: tuple, tracks) -> int | None:
        from fv2es.media.isolate import decode_retrying
        from fv2es.media.speaker import envelope, has_speech, speaker_of, sync_scores
        from fv2es.pipeline.packing import unpack_frame_times

        start, end = row["start"] or 0.0, row["end"]
        span = [(start, end)] if end is not None and np.isfinite(end) else None
        timeout, retries, backoff = self.tries
        (dense, *_) = decode_retrying(row["video_uri"], span, self.sync_decode, self.storage_options, timeout,
                                      retries, backoff)
        if dense.status != OK or dense.frames.ndim != 4 or len(dense.frames) < 4:
            return None
        times = np.asarray(dense.frame_times_s, np.float64)
        env = envelope(np.asarray(dense.audio, np.float32), self.sync_decode.sample_rate, dense.start_s, times)
        if not has_speech(env):
            return None
        scale = (dense.frames.shape[2] / shape[2], dense.frames.shape[1] / shape[1])
        scores = sync_scores(list(tracks), unpack_frame_times(row), dense.frames, times, env, scale)
        return speaker_of(scores)
