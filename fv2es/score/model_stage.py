"""The model stage of the scoring job: segment rows -> emotion probabilities, fused and per modality."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from fv2es.emotions import MODALITY_NAMES, prob_column
from fv2es.failures import OK
from fv2es.pipeline.spec import MediaJob, StageSpec, actor_spec
from fv2es.pipeline.timing import apportion

EMPTY = "empty"  # a decoded segment with none of the model's modalities in it


class ModelStage:
    """Scores batches of segments of many videos together through a :class:`~fv2es.predict.Predictor`
    (the checkpoint loaded once, in inference form: RepVGG folded, eval, ``inference_mode``; or, for
    a ``checkpoint_uri`` of None or ``packaged:...``, the packaged default model).

    Each row gets the fused ``prob_<emotion>`` and what each modality said alone,
    ``prob_<modality>_<emotion>`` for text, face and voice: null where the model has no such
    branch or the segment lacks that modality.

    Run as an actor pool. ``precision`` (``fp32`` | ``bf16``: the one the scoring job's driver
    resolved and recorded, :func:`fv2es.pipeline.dataset.sized_config`) is the forward pass's autocast. Forward passes are
    batched by media content: consecutive segments share a pass while it holds at most
    ``batch_size`` segments, ``max_pieces`` spectrogram pieces and ``max_frames`` face frames; a
    segment over the budget runs alone, its encoders in slices of the budget (see
    :class:`~fv2es.predict.Predictor`), so no input's length sets the actor's memory. Rows that
    failed upstream pass through with null probabilities; a segment with no face frames, no audio
    and no text (for the modalities the model uses; for the packaged model, whose faces are only
    the frames where MTCNN found one, no found face and no text) becomes status ``empty``. ``model_ms`` is each
    segment's share of its forward pass's time (:func:`~fv2es.pipeline.timing.apportion`).
    """

    name, title, pool = "model", "model", "model"
    timing = ("model_ms",)

    @staticmethod
    def columns(emotions) -> list[str]:
        """The score table's columns from the model stage, for a model of ``emotions``: the fused
        probabilities, then per modality (text, face, voice) its own, then the decision."""
        per_modality = [prob_column(e, m) for m in MODALITY_NAMES.values() for e in emotions]
        return [*[prob_column(e) for e in emotions], *per_modality, "top_emotion", "predicted", "model_id"]

    @classmethod
    def spec(cls, job: MediaJob, checkpoint_uri: str | None, storage_options: dict | None) -> StageSpec:
        """The model actor pool that ends the scoring pipeline, as ``job``'s sized resources say."""
        r = job.cfg.resources
        return actor_spec(cls, job, kwargs={
            "checkpoint_uri": checkpoint_uri, "storage_options": storage_options,
            "device": "cuda" if r.model_gpus > 0 else "cpu", "precision": job.cfg.score.precision,
            "threads": r.model_threads, "batch_size": r.model_batch_size,
            "max_pieces": r.model_batch_pieces, "max_frames": r.model_batch_frames})

    def __init__(self, checkpoint_uri: str | None, storage_options: dict | None = None, device: str = "cpu",
                 threads: int = 1, batch_size: int = 16, precision: str = "fp32",
                 max_pieces: int = 64, max_frames: int = 256):
        import torch

        from fv2es.compute import autocast_dtype
        from fv2es.predict import Predictor

        if not device.startswith("cuda"):
            torch.set_num_threads(max(1, threads))
        self.predictor = Predictor.load(checkpoint_uri, device=device, storage_options=storage_options,
                                        dtype=autocast_dtype(precision), max_pieces=max_pieces, max_frames=max_frames)
        self.emotions = self.predictor.emotions
        self.modalities = self.predictor.config.modalities
        # The packaged model looks only at the frames where a face was found.
        found_only = getattr(self.predictor.model, "found_faces_only", False)
        self.frames_column = "faces_found" if found_only else "frames_sampled"
        self.empty_error = ("no face found and no transcript in this segment (the packaged model has no voice part)"
                            if found_only else "no face frames, audio or transcript in this segment for this model")
        self.batch_size, self.max_pieces, self.max_frames = batch_size, max_pieces, max_frames

    def _present(self, row: dict) -> bool:
        return (("t" in self.modalities and bool((row["text"] or "").strip()))
                or ("a" in self.modalities and row["piece_count"] > 0)
                or ("v" in self.modalities and row[self.frames_column] > 0))

    def _content(self, row: dict) -> tuple[int, int]:
        """(pieces, frames) of a row that the model's encoders will run on."""
        return (row["piece_count"] if "a" in self.modalities else 0,
                row[self.frames_column] if "v" in self.modalities else 0)

    def forward_batches(self, rows: list[dict], todo: list[int]) -> list[list[int]]:
        """``todo`` (row indices, in order) cut into forward passes within the batch budget."""
        batches, current, pieces, frames = [], [], 0, 0
        for i in todo:
            p, f = self._content(rows[i])
            if current and (len(current) >= self.batch_size or pieces + p > self.max_pieces
                            or frames + f > self.max_frames):
                batches.append(current)
                current, pieces, frames = [], 0, 0
            current.append(i)
            pieces, frames = pieces + p, frames + f
        return [*batches, current] if current else batches

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        status = [r["status"] for r in rows]
        error = [r["error"] for r in rows]
        probs = np.full((len(rows), len(self.emotions)), np.nan)
        alone = {m: np.full_like(probs, np.nan) for m in MODALITY_NAMES.values()}
        model_ms = np.zeros(len(rows))
        todo = []
        for i, r in enumerate(rows):
            if status[i] != OK:
                continue
            if self._present(r):
                todo.append(i)
            else:
                status[i] = EMPTY
                error[i] = self.empty_error
        for idx in self.forward_batches(rows, todo):
            start = time.perf_counter()
            probs[idx], by_modality = self.predictor.predict_rows_by_modality([rows[i] for i in idx])
            for name, p in by_modality.items():
                alone[name][idx] = p
            elapsed_ms = (time.perf_counter() - start) * 1000
            model_ms[idx] = apportion(elapsed_ms, [sum(self._content(rows[i])) + 1 for i in idx])
        scored = np.zeros(len(rows), bool)
        scored[todo] = True

        table = batch.drop_columns(["faces", "pieces", "status", "error"])
        for j, emotion in enumerate(self.emotions):
            table = table.append_column(prob_column(emotion), pa.array(probs[:, j], pa.float64(), mask=~scored))
        for name, p in alone.items():
            for j, emotion in enumerate(self.emotions):
                table = table.append_column(prob_column(emotion, name),
                                            pa.array(p[:, j], pa.float64(), mask=np.isnan(p[:, j])))
        top = [self.emotions[int(np.argmax(p))] if ok else None for p, ok in zip(probs, scored)]
        decided = self.predictor.decide(probs)
        predicted = [d if ok else None for d, ok in zip(decided, scored)]
        table = table.append_column("top_emotion", pa.array(top, pa.string()))
        table = table.append_column("predicted", pa.array(predicted, pa.list_(pa.string())))
        table = table.append_column("model_id", pa.array([self.predictor.model_id] * len(rows), pa.string()))
        table = table.append_column("status", pa.array(status, pa.string()))
        table = table.append_column("error", pa.array(error, pa.string()))
        return table.append_column("model_ms", pa.array(model_ms, pa.float64()))
