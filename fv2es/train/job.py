"""Training and evaluation jobs: Ray Train's TorchTrainer over the preprocess shards.

A run lives at ``<output>/<name>/``: Ray Train's checkpoints (``checkpoint_epoch_NNN/``, each with
``model.safetensors`` + optimiser state), ``metrics.jsonl`` and ``metrics.parquet`` (one row per
epoch; ``train_*``, ``valid_*`` and ``test_*`` columns), and ``best.safetensors``, the checkpoint
with the best validation average F1 (with its validated thresholds): the one ``score`` uses.
Starting again with the same output and name continues the run from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from fv2es.config import Config, config_from_dict
from fv2es.preprocess import read_examples
from fv2es.storage import arrow_filesystem, options_for
from fv2es.train.metrics import evaluate, loss_pos_weight

HEADLINE = ("acc", "avg_f1", "avg_auc", "avg_acc", "avg_wacc")


@dataclass
class TrainRequest:
    data_uri: str  # a preprocess output
    output_uri: str = "runs"
    name: str | None = None  # default: fv2es-<dataset>-<modalities>-<time>
    storage_options: dict | None = None
    address: str | None = None
    init_checkpoint: str | None = None  # --ckpt without --valid/--test: start from these weights
    init_modalities: str | None = None  # --ckpt-mod


def dataset_info(data_uri: str, storage_options: dict | None) -> dict:
    fs, root = url_to_fs(data_uri, **options_for(data_uri, storage_options))
    path = f"{root}/metadata.json"
    if not fs.exists(path):
        raise FileNotFoundError(f"{data_uri}: no metadata.json; is this an `fv2es preprocess` output?")
    with fs.open(path) as f:
        return json.load(f)


def with_dataset_emotions(cfg: Config, info: dict) -> Config:
    """The model predicts the dataset's emotions, in the dataset's order."""
    data = cfg.to_dict()
    data["model"]["emotions"] = info["emotions"]
    return config_from_dict(data)


def _splits(req: TrainRequest, storage_options):
    import ray

    fs, root = arrow_filesystem(req.data_uri, storage_options)
    ds = ray.data.read_parquet(f"{root}/examples", filesystem=fs,
                               columns=["split", "target", "text", "faces", "pieces", "status"])
    ds = ds.filter(expr="status == 'ok'")
    return {split: ds.filter(expr=f"split == '{split}'") for split in ("train", "valid", "test")}


def run_train(cfg: Config, req: TrainRequest, out=None) -> dict:
    """Train; returns the best epoch's row (with the path of ``best.safetensors``)."""
    out = out if out is not None else sys.stdout  # resolved now: tests swap sys.stdout
    import ray.train
    from ray.train.torch import TorchTrainer

    from fv2es.pipeline.dataset import init_ray
    from fv2es.train.loop import train_loop

    info = dataset_info(req.data_uri, req.storage_options)
    cfg = with_dataset_emotions(cfg, info)
    tc = cfg.train
    train_targets = read_examples(req.data_uri, req.storage_options, columns=["split", "target", "status"])
    mask = [s == "train" and st == "ok" for s, st in zip(train_targets.column("split").to_pylist(),
                                                         train_targets.column("status").to_pylist())]
    targets = np.array(train_targets.filter(pa.array(mask)).column("target").to_pylist(), dtype=np.float32)
    if len(targets) == 0:
        raise ValueError(f"{req.data_uri}: no usable training examples")
    empty = [s for s in ("valid", "test") if not info["split_rows"].get(s)]
    if empty:
        raise ValueError(f"{req.data_uri}: no usable examples in the {' and '.join(empty)} split(s); "
                         "validation picks thresholds and the best epoch, so each split needs examples")
    name = req.name or f"fv2es-{info['dataset']}-{cfg.model.modalities}-{time.strftime('%Y%m%d-%H%M%S')}"
    init_ray(req.address)
    fs, storage = arrow_filesystem(req.output_uri, req.storage_options)
    print(f"training {cfg.model.preset} ({cfg.model.modalities}) on {len(targets)} utterances, "
          f"{tc.num_workers} worker(s) -> {req.output_uri}/{name}", file=out, flush=True)
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
        datasets=_splits(req, req.storage_options),
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
    )
    trainer.fit()
    return finish_run(req, name, out)


def finish_run(req: TrainRequest, name: str, out) -> dict:
    """Write the metrics tables and ``best.safetensors`` from the run's last checkpoint."""
    fs, root = url_to_fs(req.output_uri, **options_for(req.output_uri, req.storage_options))
    run = f"{root.rstrip('/')}/{name}"
    last = sorted(p for p in fs.ls(run, detail=False) if p.rsplit("/", 1)[-1].startswith("checkpoint_epoch_"))[-1]
    with fs.open(f"{last}/state.json") as f:
        state = json.load(f)
    rows = state["rows"]
    with fs.open(f"{run}/metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    with fs.open(f"{run}/metrics.parquet", "wb") as f:
        pq.write_table(pa.Table.from_pylist([{k: v for k, v in r.items() if k != "thresholds"} for r in rows]), f)
    best = state["best_epoch"]
    fs.copy(f"{run}/checkpoint_epoch_{best:03d}/model.safetensors", f"{run}/best.safetensors")
    best_row = rows[[r["epoch"] for r in rows].index(best)]
    best_uri = f"{req.output_uri.rstrip('/')}/{name}/best.safetensors"
    print(f"{len(rows)} epochs; best epoch {best} (valid avg F1 {best_row['valid_avg_f1']:.4f})", file=out)
    print(f"best checkpoint: {best_uri}", file=out)
    print("test: " + ", ".join(f"{k} {best_row['test_' + k]:.4f}" for k in HEADLINE if f"test_{k}" in best_row),
          file=out)
    return {**best_row, "best_checkpoint": best_uri, "run": f"{req.output_uri.rstrip('/')}/{name}"}


def predict_split(checkpoint_uri: str, data_uri: str, split: str, storage_options: dict | None = None,
                  device: str = "cpu", batch_size: int = 32):
    """``(checkpoint, dataset info, probs (N, E), targets (N, E))`` of a checkpoint on one split."""
    from fv2es.models import load_checkpoint
    from fv2es.train.data import ExampleCollate, predict, table_batches

    ckpt = load_checkpoint(checkpoint_uri, device=device, storage_options=options_for(checkpoint_uri, storage_options))
    info = dataset_info(data_uri, storage_options)
    if list(ckpt.config.emotions) != info["emotions"]:
        raise ValueError(f"checkpoint emotions {list(ckpt.config.emotions)} != data emotions {info['emotions']}")
    table = read_examples(data_uri, storage_options, columns=["split", "target", "text", "faces", "pieces", "status"])
    keep = [s == split and st == "ok" for s, st in zip(table.column("split").to_pylist(),
                                                       table.column("status").to_pylist())]
    table = table.filter(pa.array(keep))
    if table.num_rows == 0:
        raise ValueError(f"{data_uri}: no usable examples in split {split!r}")
    collate = ExampleCollate(ckpt.config.text_model, ckpt.config.text_max_len)
    softmax = ckpt.extra.get("loss", "bce") == "ce"
    probs, targets = predict(ckpt.model, table_batches(table, batch_size), collate, device, softmax)
    return ckpt, info, probs, targets


def run_evaluate(checkpoint_uri: str, data_uri: str, split: str, storage_options: dict | None = None,
                 device: str = "cpu", batch_size: int = 32, out=None) -> dict:
    """Metrics of a checkpoint on one split of a preprocess output (no training, no Ray needed).

    On ``valid`` the thresholds are chosen there (as in training); on ``test`` the checkpoint's
    validated thresholds are applied (0.5 if it has none).
    """
    out = out if out is not None else sys.stdout  # resolved now: tests swap sys.stdout
    ckpt, info, probs, targets = predict_split(checkpoint_uri, data_uri, split, storage_options, device, batch_size)
    thresholds = None if split == "valid" else (ckpt.thresholds or [0.5] * len(ckpt.config.emotions))
    loss = ckpt.extra.get("loss", "bce")
    metrics, chosen = evaluate(probs, targets, list(ckpt.config.emotions), info["dataset"], thresholds, loss)
    print(f"{split}: {len(probs)} utterances, checkpoint {ckpt.model_id}", file=out)
    for key in HEADLINE:
        if key in metrics:
            print(f"  {key:<10} {metrics[key]:.4f}", file=out)
    return {"split": split, "utterances": len(probs), "thresholds": [float(t) for t in chosen], **metrics}
