"""Evaluation of a checkpoint on one split of the example shards (no training, no Ray needed)."""

from __future__ import annotations

import logging

import numpy as np

from fv2es.models.checkpoint import read_checkpoint_info
from fv2es.predict import Predictor
from fv2es.shards import ExampleShards, model_columns, table_batches
from fv2es.storage import options_for
from fv2es.train.data import ExampleCollate, predict
from fv2es.train.metrics import evaluate, headline

log = logging.getLogger(__name__)


def predict_split(checkpoint_uri: str, data_uri: str, split: str, storage_options: dict | None = None,
                  device: str = "cpu", batch_size: int = 32) -> tuple[Predictor, dict, np.ndarray, np.ndarray]:
    """``(predictor, shards metadata, probs (N, E), targets (N, E))`` of a checkpoint on one split's
    usable examples."""
    # Both checked before the model is built: a broken checkpoint or a wrong --data fails at once.
    read_checkpoint_info(checkpoint_uri, options_for(checkpoint_uri, storage_options))
    shards = ExampleShards(data_uri, storage_options)
    info = shards.metadata()
    predictor = Predictor.from_checkpoint(checkpoint_uri, device=device,
                                          storage_options=options_for(checkpoint_uri, storage_options))
    if predictor.emotions != info["emotions"]:
        raise ValueError(f"checkpoint emotions {predictor.emotions} != data emotions {info['emotions']}")
    if predictor.config.hand_crafted:  # the seed's baselines read the shards' own features
        from fv2es.models.handcrafted import check_shards

        check_shards(predictor.config, info, data_uri)
    table = shards.read(model_columns(predictor.config), split=split, usable=True)
    if table.num_rows == 0:
        raise ValueError(f"{data_uri}: no usable examples in split {split!r}")
    collate = ExampleCollate.for_model(predictor.config)
    probs, targets = predict(predictor, table_batches(table, batch_size), collate)
    return predictor, info, probs, targets


def run_evaluate(checkpoint_uri: str, data_uri: str, split: str, storage_options: dict | None = None,
                 device: str = "cpu", batch_size: int = 32) -> dict:
    """Metrics of a checkpoint on one split of a preprocess output.

    On ``valid`` the thresholds are chosen there (as in training); on ``test`` the checkpoint's
    validated thresholds are applied (the default threshold if it has none).
    """
    predictor, info, probs, targets = predict_split(checkpoint_uri, data_uri, split, storage_options, device,
                                                    batch_size)
    thresholds = None if split == "valid" else predictor.thresholds
    loss = "ce" if predictor.single_label else "bce"
    metrics, chosen = evaluate(probs, targets, predictor.emotions, info["dataset"], thresholds, loss)
    log.info(f"{split}: {len(probs)} utterances, checkpoint {predictor.model_id}")
    log.info(f"  {headline(metrics)}")
    return {"split": split, "utterances": len(probs), "thresholds": [float(t) for t in chosen], **metrics}
