"""The model stage of the scoring job: segment rows -> emotion probabilities."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa

from fv2es.media.failures import OK

EMPTY = "empty"  # a decoded segment with none of the model's modalities in it


def prob_column(emotion: str) -> str:
    """The segment table's probability column of ``emotion``."""
    return f"prob_{emotion}"


class ModelStage:
    """Scores batches of segments of many videos together through a :class:`~fv2es.predict.Predictor`
    (the checkpoint loaded once, in inference form: RepVGG folded, eval, ``inference_mode``).

    Run as an actor pool; on CUDA the forward pass runs under bf16 autocast. Rows that failed
    upstream pass through with null probabilities; a segment with no face frames, no audio and
    no text (for the modalities the model uses) becomes status ``empty``.
    """

    def __init__(self, checkpoint_uri: str, storage_options: dict | None = None, device: str = "cpu",
                 threads: int = 1, batch_size: int = 16, bf16: bool = True):
        import torch

        from fv2es.predict import Predictor

        if not device.startswith("cuda"):
            torch.set_num_threads(max(1, threads))
        self.predictor = Predictor.from_checkpoint(checkpoint_uri, device=device, storage_options=storage_options,
                                                   dtype=None if bf16 else torch.float32)
        self.emotions = self.predictor.emotions
        self.modalities = self.predictor.config.modalities
        self.batch_size = batch_size

    def _present(self, row: dict) -> bool:
        return (("t" in self.modalities and bool((row["text"] or "").strip()))
                or ("a" in self.modalities and row["piece_count"] > 0)
                or ("v" in self.modalities and row["frames_sampled"] > 0))

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        status = [r["status"] for r in rows]
        error = [r["error"] for r in rows]
        probs = np.full((len(rows), len(self.emotions)), np.nan)
        todo = []
        for i, r in enumerate(rows):
            if status[i] != OK:
                continue
            if self._present(r):
                todo.append(i)
            else:
                status[i] = EMPTY
                error[i] = "no face frames, audio or transcript in this segment for this model"
        start = time.perf_counter()
        for k in range(0, len(todo), self.batch_size):
            idx = todo[k : k + self.batch_size]
            probs[idx] = self.predictor.predict_rows([rows[i] for i in idx])
        per_row_ms = (time.perf_counter() - start) * 1000 / max(1, len(todo))
        scored = np.zeros(len(rows), bool)
        scored[todo] = True

        table = batch.drop_columns(["faces", "pieces", "status", "error"])
        for j, emotion in enumerate(self.emotions):
            table = table.append_column(prob_column(emotion), pa.array(probs[:, j], pa.float64(), mask=~scored))
        top = [self.emotions[int(np.argmax(p))] if ok else None for p, ok in zip(probs, scored)]
        decided = self.predictor.decide(probs)
        predicted = [d if ok else None for d, ok in zip(decided, scored)]
        table = table.append_column("top_emotion", pa.array(top, pa.string()))
        table = table.append_column("predicted", pa.array(predicted, pa.list_(pa.string())))
        table = table.append_column("model_id", pa.array([self.predictor.model_id] * len(rows), pa.string()))
        table = table.append_column("status", pa.array(status, pa.string()))
        table = table.append_column("error", pa.array(error, pa.string()))
        return table.append_column("model_ms", pa.array(np.where(scored, per_row_ms, 0.0), pa.float64()))
