"""The face stage: each row's frames -> 48x48 face crops (MTCNN, centre-crop fallback)."""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import pyarrow as pa

from fv2es.media.faces import FaceConfig
from fv2es.pipeline.packing import pack
from fv2es.pipeline.spec import MediaJob, StageSpec, actor_spec

FRAME_COLUMNS = ["frames", "frame_times", "frame_height", "frame_width"]


class Faces:
    """Segment rows with frames -> rows with 48x48 face crops (``faces``), the per-frame
    ``face_mask`` (1 = MTCNN found a face, 0 = centre-crop fallback) and ``faces_found``.

    Run as an actor pool (``map_batches(Faces, fn_constructor_args=..., compute=...)``);
    MTCNN is built once per actor, on ``config.device``. The speaker side of a row, when given
    (IEMOCAP), picks the face in that half of the frame. The frame columns are dropped.
    """

    name, title, pool = "faces", "faces", "face"
    config_sections = ("faces",)
    columns = ("faces_found",)
    timing = ("face_ms",)

    @classmethod
    def enabled(cls, cfg) -> bool:
        """Whether a job with ``cfg`` runs this stage (always)."""
        return True

    @classmethod
    def spec(cls, job: MediaJob) -> StageSpec:
        """An actor pool; MTCNN on CUDA when the pool is given GPUs."""
        r = job.cfg.resources
        faces = job.cfg.faces if r.face_gpus == 0 else dataclasses.replace(job.cfg.faces, device="cuda")
        return actor_spec(cls, job, (faces, max(1, round(r.face_cpus))))

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
        rows = batch.select(["frames", "frame_height", "frame_width", "frames_sampled", "speaker_side"]).to_pylist()
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
        table = batch.drop_columns([c for c in FRAME_COLUMNS if c in batch.column_names])
        table = table.append_column("faces", pa.array(faces, pa.binary()))
        table = table.append_column("face_mask", pa.array(masks, pa.binary()))  # uint8 per frame: 1 = face found
        table = table.append_column("faces_found", pa.array(found, pa.int32()))
        return table.append_column("face_ms", pa.array(times, pa.float64()))
