"""The hand-crafted feature stages of the seed's baselines (``data.hand_crafted=true``; preprocessing).

Two task stages, each where its input still is: :class:`VoiceFeatures` before the spectrogram
stage drops the waveform (the real F0 needs it), :class:`FaceTextFeatures` after the face stage
(the crops). What they write is described dimension by dimension in :mod:`fv2es.models.handcrafted`;
the example shards keep it (:data:`fv2es.shards.HCF_COLUMNS`). Off by default: scoring and FV2ES's
preprocessing do not run them, and their columns are not in the score table.
"""

from __future__ import annotations

import pyarrow as pa

from fv2es.failures import OK
from fv2es.pipeline.packing import pack, unpack_faces, unpack_waveform
from fv2es.pipeline.spec import MediaJob, StageSpec


class _FeatureStage:
    pool = None
    config_sections = ()  # preprocessing only: the scoring config digest stays what it was
    columns = ()  # not in the score table
    timing = ()

    @classmethod
    def enabled(cls, cfg) -> bool:
        """Whether a job with ``cfg`` runs this stage: ``data.hand_crafted``."""
        return bool(cfg.data.hand_crafted)


class VoiceFeatures(_FeatureStage):
    """Rows with ``waveform`` -> rows with ``hcf_audio`` (float32 (frames, 88) bytes; failed rows: empty)."""

    name, title = "voice_features", "voice feature tasks"

    @classmethod
    def spec(cls, job: MediaJob) -> StageSpec | None:
        """Tasks beside the spectrogram's, when enabled."""
        if not cls.enabled(job.cfg):
            return None
        return StageSpec(cls.name, cls, (job.cfg.spectrogram,), cpus=job.cfg.resources.spectrogram_cpus)

    def __init__(self, spectrogram):
        self.spectrogram = spectrogram

    def __call__(self, batch: pa.Table) -> pa.Table:
        from fv2es.models.handcrafted import audio_descriptors

        rows = batch.select(["waveform", "status"]).to_pylist()
        out = [pack(audio_descriptors(unpack_waveform(r), self.spectrogram)) if r["status"] == OK else b""
               for r in rows]
        return batch.append_column("hcf_audio", pa.array(out, pa.binary()))


class FaceTextFeatures(_FeatureStage):
    """Rows with ``text`` and ``faces`` -> rows with ``hcf_text`` and ``hcf_visual`` (float32
    bytes). The frozen networks load once per worker process and run on one thread."""

    name, title = "face_text_features", "face and text feature tasks"

    @classmethod
    def spec(cls, job: MediaJob) -> StageSpec | None:
        """Tasks after the face actors, when enabled."""
        if not cls.enabled(job.cfg):
            return None
        # Each task's process holds MiniLM and the face network (about 0.5 GB): a quarter of the
        # cluster's CPUs at most at once (2 on a small one), each reserving the spectrogram's share.
        return StageSpec(cls.name, cls, cpus=job.cfg.resources.spectrogram_cpus,
                         tasks=max(2, int(job.cluster_cpus) // 4))

    def __call__(self, batch: pa.Table) -> pa.Table:
        import torch

        from fv2es.models.handcrafted import TEXT_MAX_LEN, TEXT_MODEL, HandCraftedFeatures

        torch.set_num_threads(1)  # a task beside the face actors on a small cluster
        features = HandCraftedFeatures(TEXT_MODEL, TEXT_MAX_LEN)
        rows = batch.select(["text", "faces", "status"]).to_pylist()
        ok = [r["status"] == OK for r in rows]
        texts = features.text([r["text"] if good else "" for r, good in zip(rows, ok)])
        visual = [pack(features.visual(unpack_faces(r["faces"]))) if good else b"" for r, good in zip(rows, ok)]
        batch = batch.append_column("hcf_text", pa.array([pack(t) for t in texts], pa.binary()))
        return batch.append_column("hcf_visual", pa.array(visual, pa.binary()))
