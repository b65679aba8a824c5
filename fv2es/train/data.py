"""Example rows (the preprocess shards) -> model batches, and batched prediction."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from fv2es.models.inputs import Collate, ModelInputs
from fv2es.pipeline.packing import unpack_faces, unpack_pieces

# What training reads of each example (the rest of the shard is for people and the report).
TRAIN_COLUMNS = ["id", "split", "target", "text", "faces", "pieces", "status"]


class ExampleCollate:
    """pyarrow batch of example rows -> (:class:`ModelInputs`, targets (B, E) float32)."""

    def __init__(self, text_model: str, max_len: int):
        self.collate = Collate(text_model, max_len)

    def __call__(self, batch: pa.Table) -> tuple[ModelInputs, torch.Tensor]:
        rows = batch.select(["text", "faces", "pieces", "target"]).to_pylist()
        samples = [{"text": r["text"], "faces": unpack_faces(r["faces"]), "pieces": unpack_pieces(r["pieces"])}
                   for r in rows]
        targets = torch.tensor(np.array([r["target"] for r in rows], dtype=np.float32))
        return self.collate(samples), targets


def predict(model, batches, collate: ExampleCollate, device, softmax: bool = False, bf16: bool = True):
    """Probabilities and targets, (N, E) numpy each, of a model (eval mode) over pyarrow batches."""
    probs, targets = [], []
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16 and torch.device(device).type == "cuda")
    with torch.inference_mode(), autocast:
        for batch in batches:
            x, y = collate(batch)
            logits = model(x.to(device)).float()
            probs.append((torch.softmax(logits, -1) if softmax else torch.sigmoid(logits)).cpu().numpy())
            targets.append(y.numpy())
    if not probs:
        return np.zeros((0, 0)), np.zeros((0, 0))
    return np.concatenate(probs), np.concatenate(targets)


def table_batches(table: pa.Table, batch_size: int):
    for start in range(0, table.num_rows, batch_size):
        yield table.slice(start, batch_size)
