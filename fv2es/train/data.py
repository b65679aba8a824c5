"""Example rows (the preprocess shards) -> model batches, and batched prediction over them."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import torch

from fv2es.models.inputs import Collate, ModelInputs
from fv2es.predict import Predictor, samples_from_rows
from fv2es.shards import HCF_COLUMNS, MODEL_COLUMNS


class ExampleCollate:
    """pyarrow batch of example rows -> (:class:`ModelInputs`, targets (B, E) float32).

    The inputs are built exactly as :class:`~fv2es.predict.Predictor` builds them for scoring.
    """

    def __init__(self, text_model: str, max_len: int):
        self.collate = Collate(text_model, max_len)

    @classmethod
    def for_model(cls, config) -> ExampleCollate:
        """The collate of the network ``config`` (a ModelConfig) names: FV2ES's, or for the seed's
        baselines their hand-crafted features (:func:`fv2es.models.handcrafted.model_collate`)."""
        from fv2es.models.handcrafted import model_collate

        collate = cls.__new__(cls)
        collate.collate = model_collate(config)
        return collate

    def __call__(self, batch: pa.Table) -> tuple[ModelInputs, torch.Tensor]:
        from fv2es.models.handcrafted import ShardFeatureCollate

        if isinstance(self.collate, ShardFeatureCollate):  # a baseline: the shards' own features
            rows = batch.select([*HCF_COLUMNS, "target"]).to_pylist()
            samples = rows
        else:
            rows = batch.select(MODEL_COLUMNS).to_pylist()
            samples = samples_from_rows(rows)
        targets = torch.tensor(np.array([r["target"] for r in rows], dtype=np.float32))
        return self.collate(samples), targets


def predict(predictor: Predictor, batches: Iterable[pa.Table], collate: ExampleCollate) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and targets, (N, E) numpy each, of a predictor over batches of example rows."""
    probs, targets = [], []
    for batch in batches:
        x, y = collate(batch)
        probs.append(predictor.probabilities(x))
        targets.append(y.numpy())
    if not probs:
        return np.zeros((0, 0)), np.zeros((0, 0))
    return np.concatenate(probs), np.concatenate(targets)
