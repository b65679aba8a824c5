"""The training job: Ray Train's TorchTrainer over the example shards (:mod:`fv2es.shards`).

A run lives at ``<output>/<name>/``: Ray Train's checkpoints (``checkpoint_epoch_NNN/``, each with
``model.safetensors`` + optimiser state), ``metrics.jsonl`` and ``metrics.parquet`` (one row per
epoch; ``train_*``, ``valid_*`` and ``test_*`` columns), and ``best.safetensors``, the checkpoint
with the best validation average F1 (with its validated thresholds): the one ``score`` uses.
Starting again with the same output and name continues the run from its last checkpoint.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from fv2es.config import Config, config_from_dict
from fv2es.data.utterance import SPLITS
from fv2es.errors import InputError
from fv2es.shards import MODEL_COLUMNS, ExampleShards
from fv2es.storage import arrow_filesystem
from fv2es.train.metrics import HEADLINE, loss_pos_weight
from fv2es.train.run import RunFolder

log = logging.getLogger(__name__)


@dataclass
class TrainRequest:
    """Which shards to train on, where the run goes, and optional starting weights."""

    data_uri: str  # a preprocess output
    output_uri: str = "runs"
    name: str | None = None  # default: fv2es-<dataset>-<modalities>-<time>
    storage_options: dict | None = None
    address: str | None = None
    init_checkpoint: str | None = None  # --ckpt without --valid/--test: start from these weights
    init_modalities: str | None = None  # --ckpt-mod


def with_dataset_emotions(cfg: Config, info: dict) -> Config:
    """The model predicts the dataset's emotions, in the dataset's order."""
    data = cfg.to_dict()
    data["model"]["emotions"] = info["emotions"]
    return config_from_dict(data)


def run_train(cfg: Config, req: TrainRequest) -> dict:
    """Train; returns the best epoch's row (with the path of ``best.safetensors``)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from fv2es.pipeline.dataset import init_ray
    from fv2es.train.loop import train_loop

    shards = ExampleShards(req.data_uri, req.storage_options)
    info = shards.metadata()
    cfg = with_dataset_emotions(cfg, info)
    tc = cfg.train
    targets = np.array(shards.read(["target"], split="train", usable=True)["target"].to_pylist(), dtype=np.float32)
    if len(targets) == 0:
        raise InputError(f"{req.data_uri}: no usable training examples")
    empty = [s for s in ("valid", "test") if not info["split_rows"].get(s)]
    if empty:
        raise ValueError(f"{req.data_uri}: no usable examples in the {' and '.join(empty)} split(s); "
                         "validation picks thresholds and the best epoch, so each split needs examples")
    name = req.name or f"fv2es-{info['dataset']}-{cfg.model.modalities}-{time.strftime('%Y%m%d-%H%M%S')}"
    init_ray(req.address)
    fs, storage = arrow_filesystem(req.output_uri, req.storage_options)
    log.info(f"training {cfg.model.preset} ({cfg.model.modalities}) on {len(targets)} utterances, "
             f"{tc.num_workers} worker(s) -> {req.output_uri}/{name}")
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"config": cfg.to_dict(), "dataset": info["dataset"],
                           "pos_weight": loss_pos_weight(targets).tolist(),
                           "init_checkpoint": req.init_checkpoint, "init_modalities": req.init_modalities},
        scaling_config=ray.train.ScalingConfig(
            num_workers=tc.num_workers, use_gpu=tc.use_gpu,
            resources_per_worker={"CPU": tc.worker_cpus, **({"GPU": 1} if tc.use_gpu else {})}),
        run_config=ray.train.RunConfig(
            name=name, storage_path=storage, storage_filesystem=fs,
            failure_config=ray.train.FailureConfig(max_failures=tc.max_failures),
            # FV2ES_* settings (e.g. the tests' fault injection) reach the workers too.
            worker_runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith("FV2ES_")}}),
        datasets={split: shards.dataset(split, MODEL_COLUMNS) for split in SPLITS},
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
    )
    trainer.fit()
    return finish_run(req, name)


def finish_run(req: TrainRequest, name: str) -> dict:
    """Write the metrics tables and ``best.safetensors`` from the run's last checkpoint."""
    run = RunFolder(f"{req.output_uri.rstrip('/')}/{name}", req.storage_options)
    state = run.last_state()
    rows, best = state["rows"], state["best_epoch"]
    best_uri = run.finish(rows, best)
    best_row = rows[[r["epoch"] for r in rows].index(best)]
    log.info(f"{len(rows)} epochs; best epoch {best} (valid avg F1 {best_row['valid_avg_f1']:.4f})")
    log.info(f"best checkpoint: {best_uri}")
    log.info("test: " + ", ".join(f"{k} {best_row['test_' + k]:.4f}" for k in HEADLINE if f"test_{k}" in best_row))
    return {**best_row, "best_checkpoint": best_uri, "run": run.uri}
