"""The Ray side of the media pipeline: the embedded-or-cluster Ray, and job rows -> face-cropped
segment rows as a streaming Dataset (the scoring and preprocessing jobs both start from it)."""

from __future__ import annotations

import dataclasses
import logging

from fv2es.config import Config, ScoreConfig
from fv2es.pipeline.stages import DecodeStage, FaceStage


def init_ray(address: str | None) -> None:
    """Connect to ``address``, else ``RAY_ADDRESS``, else start an embedded local Ray (once)."""
    import ray

    if not ray.is_initialized():
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)


def media_dataset(jobs: list[dict], cfg: Config, plan: ScoreConfig, storage_options: dict | None):
    """Decode tasks (``plan`` decides the segments) then the face-crop actor pool, streaming.

    Resources come from ``cfg.score``: decode tasks take ``decode_cpus``; face actors take
    ``face_cpus`` (and ``face_gpus``, which also moves MTCNN to CUDA).
    """
    import ray

    sc = cfg.score
    faces = cfg.faces if sc.face_gpus == 0 else dataclasses.replace(cfg.faces, device="cuda")
    ds = ray.data.from_items(jobs, override_num_blocks=min(len(jobs), 4096))
    ds = ds.map_batches(DecodeStage(cfg.decode, cfg.spectrogram, plan, storage_options), batch_size=1,
                        batch_format="pyarrow", num_cpus=sc.decode_cpus)
    return ds.map_batches(FaceStage, fn_constructor_args=(faces, max(1, round(sc.face_cpus))), batch_size=8,
                          batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=sc.face_actors),
                          num_cpus=sc.face_cpus, num_gpus=sc.face_gpus)
