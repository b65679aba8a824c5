"""The training job: Ray Train's TorchTrainer over the example shards (:mod:`fv2es.shards`).

A run lives at ``<output>/<name>/``: Ray Train's checkpoints (``checkpoint_epoch_NNN/``, each with
``model.safetensors`` + optimiser state), ``metrics.jsonl`` and ``metrics.parquet`` (one row per
epoch; ``train_*``, ``valid_*`` and ``test_*`` columns), and ``best.safetensors``, the checkpoint
with the best validation average F1 (with its validated thresholds): the one ``score`` uses.
Starting again with the same output and name continues the run from its last checkpoint (from the
newest intact one when the last is missing or broken). ``train.keep_checkpoints`` folders are kept
(default 2: the best and the last).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass

import numpy as np

from fv2es.config import Config, config_from_dict
from fv2es.data.utterance import SPLITS
from fv2es.errors import ConfigError, InputError
from fv2es.models.checkpoint import read_checkpoint_info, resolve_checkpoint
from fv2es.shards import ExampleShards, model_columns
from fv2es.storage import arrow_filesystem, options_for
from fv2es.train.metrics import headline, loss_pos_weight
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


@dataclass
class PlannedRun:
    """A training run checked on the driver and ready to start: what every worker is given."""

    cfg: Config  # with the dataset's emotions
    name: str  # the run folder's name under the output
    shards: ExampleShards
    loop_config: dict  # train_loop's argument


def plan_run(cfg: Config, req: TrainRequest) -> PlannedRun:
    """Check what the workers will open and work out their ``loop_config`` (no Ray needed): a
    failure is one line, before Ray starts and before a run folder exists."""
    shards = ExampleShards(req.data_uri, req.storage_options)
    info = shards.metadata()
    cfg = with_dataset_emotions(cfg, info)
    init_checkpoint, init_options = None, None
    if req.init_checkpoint:
        init_options = options_for(req.init_checkpoint, req.storage_options)
        init_checkpoint = resolve_checkpoint(req.init_checkpoint, init_options)  # absolute: workers run elsewhere
        read_checkpoint_info(init_checkpoint, init_options)  # a truncated or foreign file fails here
    check_text_model(cfg)
    if cfg.model.hand_crafted:  # the seed's baselines: feature widths checked here, not in a worker
        from fv2es.models.handcrafted import check_shards

        check_shards(cfg.model, info, req.data_uri)
    empty = [s for s in SPLITS if not info["split_rows"].get(s)]
    if empty:
        raise InputError(f"{req.data_uri}: no usable examples in the {' and '.join(empty)} split(s); "
                         "validation picks thresholds and the best epoch, so each split needs examples")
    name = req.name or f"fv2es-{info['dataset']}-{cfg.model.modalities}-{time.strftime('%Y%m%d-%H%M%S')}"
    resume_from = RunFolder(f"{req.output_uri.rstrip('/')}/{name}", req.storage_options).prepare_resume()
    targets = np.array(shards.read(["target"], split="train", usable=True)["target"].to_pylist(), dtype=np.float32)
    if len(targets) == 0:
        raise InputError(f"{req.data_uri}: no usable training examples")
    log.info(f"training {cfg.model.preset} ({cfg.model.modalities}) on {len(targets)} utterances, "
             f"{cfg.train.num_workers} worker(s) -> {req.output_uri}/{name}")
    loop_config = {"config": cfg.to_dict(), "dataset": info["dataset"],
                   "pos_weight": loss_pos_weight(targets).tolist(),
                   # one emotion per training utterance: scores predict the argmax
                   "single_label": bool((targets.sum(1) <= 1).all()),
                   "init_checkpoint": init_checkpoint, "init_modalities": req.init_modalities,
                   "init_storage_options": init_options, "resume_from": resume_from,
                   "resume_storage_options": options_for(resume_from or "", req.storage_options)}
    return PlannedRun(cfg, name, shards, loop_config)


def run_train(cfg: Config, req: TrainRequest) -> dict:
    """Train; returns the best epoch's row (with the path of ``best.safetensors``)."""
    import ray.train
    from ray.train.torch import TorchTrainer

    from fv2es.pipeline.dataset import init_ray
    from fv2es.train.loop import train_loop

    run = plan_run(cfg, req)
    tc = run.cfg.train
    init_ray(req.address)
    fs, storage = arrow_filesystem(req.output_uri, req.storage_options)
    trainer = TorchTrainer(
        train_loop,
        train_loop_config=run.loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=tc.num_workers, use_gpu=tc.use_gpu,
            resources_per_worker={"CPU": tc.worker_cpus, **({"GPU": 1} if tc.use_gpu else {})}),
        run_config=ray.train.RunConfig(
            name=run.name, storage_path=storage, storage_filesystem=fs,
            failure_config=ray.train.FailureConfig(max_failures=tc.max_failures),
            checkpoint_config=checkpoint_config(tc.keep_checkpoints),
            # FV2ES_* settings (e.g. FV2ES_CACHE) reach the workers too.
            worker_runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith("FV2ES_")}}),
        datasets={split: run.shards.dataset(split, model_columns(run.cfg.model)) for split in SPLITS},
        dataset_config=ray.train.DataConfig(datasets_to_split=["train"]),
    )
    trainer.fit()
    return finish_run(req, run.name)


def checkpoint_config(keep: int):
    """Ray Train keeps the ``num_to_keep`` best checkpoints by validation average F1 (ties: the
    later, as the loop picks its best epoch) and always the latest one besides: ``keep`` folders in
    all are the best ``keep - 1`` and the last. ``keep=0`` keeps every checkpoint."""
    import ray.train

    if keep == 0:
        return ray.train.CheckpointConfig()
    return ray.train.CheckpointConfig(num_to_keep=keep - 1, checkpoint_score_attribute="valid_avg_f1",
                                      checkpoint_score_order="max")


def check_text_model(cfg: Config) -> None:
    """The workers tokenize every transcript with ``model.text_model``'s tokenizer: load it here
    first, so a text encoder that is not available offline (``--text-model-size=base`` without
    ALBERT in the cache) is one line from the driver, not a failed worker group."""
    from fv2es.models.text import TextModelUnavailable, load_tokenizer

    try:
        load_tokenizer(cfg.model.text_model)
    except TextModelUnavailable as exc:
        raise ConfigError(f"model.text_model={cfg.model.text_model}: not available offline: give a folder holding "
                          f"it (model.text_model=/path/to/{cfg.model.text_model}), put it in the Hugging Face "
                          "cache, or use the packaged model.text_model=minilm") from exc


def finish_run(req: TrainRequest, name: str) -> dict:
    """Write the metrics tables and ``best.safetensors`` from the run's last checkpoint."""
    run = RunFolder(f"{req.output_uri.rstrip('/')}/{name}", req.storage_options)
    state = run.last_state()
    rows, best = state["rows"], state["best_epoch"]
    best_uri = run.finish(rows, best)
    best_row = rows[[r["epoch"] for r in rows].index(best)]
    log.info(f"{len(rows)} epochs; best epoch {best} (valid avg F1 {best_row['valid_avg_f1']:.4f})")
    log.info(f"best checkpoint: {best_uri}")
    log.info(f"test: {headline(best_row, 'test_')}")
    return {**best_row, "best_checkpoint": best_uri, "run": run.uri}
