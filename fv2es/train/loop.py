"""The per-worker training loop run by Ray Train's ``TorchTrainer`` (DDP: gloo on CPU, NCCL on GPU).

Each epoch: train on this worker's shard of the training split; then rank 0 folds a copy of the
model (RepVGG single-branch, as at inference) and evaluates it on the validation split (choosing
per-emotion thresholds there) and the test split (with those thresholds); every worker reports
the epoch's metrics and rank 0 a checkpoint; early stopping on validation average F1.
A restarted worker group resumes from the last reported checkpoint.

The loop asks its worker (:class:`fv2es.train.worker.RayTrainWorker` under Ray Train; or
:class:`fv2es.train.local.LocalWorker`, one process without Ray) for its rank, device, batches and
checkpoints, and hands it each epoch's report: the same loop runs in both.
"""

from __future__ import annotations

import copy
import io
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fv2es.compute import autocast_dtype, train_precision, train_threads
from fv2es.config import Config, config_from_dict
from fv2es.models import create_model, save_checkpoint
from fv2es.models.checkpoint import activation_for_loss, default_decision
from fv2es.predict import Predictor
from fv2es.train.data import ExampleCollate, predict
from fv2es.train.metrics import evaluate

MODALITY_PREFIXES = {"t": ("text.", "heads.t."), "a": ("audio.", "audio_temporal.", "heads.a."),
                     "v": ("visual.", "visual_temporal.", "heads.v.")}


def _optimizer(model, tc):
    text = {id(p) for p in model.text_parameters()}
    groups = [{"params": [p for p in model.parameters() if id(p) not in text], "lr": tc.lr}]
    if text:
        groups.append({"params": model.text_parameters(), "lr": tc.lr / tc.text_lr_factor})
    if tc.optim == "sgd":
        return torch.optim.SGD(groups, lr=tc.lr, momentum=0.9, weight_decay=tc.weight_decay)
    return torch.optim.Adam(groups, lr=tc.lr, weight_decay=tc.weight_decay)


def init_from_checkpoint(model, uri: str, modalities: str | None, storage_options: dict | None = None) -> list[str]:
    """Load the branches of ``modalities`` (all shared ones when None) from a checkpoint (``--ckpt-mod``)."""
    from fv2es.models import load_checkpoint

    source = load_checkpoint(uri, inference=False, storage_options=storage_options).model.state_dict()
    wanted = tuple(p for m in (modalities or "tav") for p in MODALITY_PREFIXES[m])
    own = model.state_dict()
    take = {k: v for k, v in source.items() if k.startswith(wanted) and k in own and own[k].shape == v.shape}
    model.load_state_dict(take, strict=False)
    return sorted(take)


def _read_saved(read) -> tuple[dict, dict, dict]:
    """``(model state, optimiser/scheduler state, loop state)`` of a saved epoch; ``read(name)``
    returns the bytes of one of its files."""
    from safetensors.torch import load as load_safetensors

    weights = load_safetensors(read("model.safetensors"))
    saved = torch.load(io.BytesIO(read("train_state.pt")), weights_only=True)
    return weights, saved, json.loads(read("state.json"))


def _restore(worker, resume_from: str | None, storage_options: dict | None):
    """The saved epoch to go on from: the worker's latest checkpoint (Ray Train's: a restart after a
    failure, or a run continued by name), else ``resume_from`` (the newest intact checkpoint, when
    the driver found the last one missing or broken: :meth:`fv2es.train.run.RunFolder.prepare_resume`)."""
    import fsspec

    restored = worker.restored(_read_saved)
    if restored:
        return restored
    if resume_from:
        def read(name: str) -> bytes:
            with fsspec.open(f"{resume_from}/{name}", "rb", **(storage_options or {})) as f:
                return f.read()
        return _read_saved(read)
    return None


def train_loop(loop_config: dict, worker=None) -> None:
    """One training worker: train, validate and checkpoint epoch by epoch (see the module doc).

    ``loop_config`` holds the run's ``config`` (a dict), the ``dataset`` kind, the BCE
    ``pos_weight``, the optional ``init_checkpoint`` / ``init_modalities`` and ``resume_from`` (a
    checkpoint folder), with the storage options of those URIs. ``worker``: the side the loop runs
    on; by default this process is a Ray Train worker (:class:`~fv2es.train.worker.RayTrainWorker`).
    """
    import torch.distributed as dist

    if worker is None:
        from fv2es.train.worker import RayTrainWorker

        worker = RayTrainWorker()
    cfg = config_from_dict(loop_config["config"])
    tc = cfg.train
    rank, world = worker.rank, worker.world
    torch.manual_seed(tc.seed)
    np.random.seed(tc.seed + rank)
    device = worker.device
    if device.type == "cpu":
        torch.set_num_threads(train_threads(tc.worker_cpus, os.cpu_count() or 1, worker.local_world))

    model = create_model(cfg.model)
    if loop_config.get("init_checkpoint"):
        init_from_checkpoint(model, loop_config["init_checkpoint"], loop_config.get("init_modalities"),
                             loop_config.get("init_storage_options"))
    state = {"epoch": 0, "best_f1": -1.0, "best_epoch": None, "bad_epochs": 0, "rows": [], "restores": 0}
    saved = None
    restored = _restore(worker, loop_config.get("resume_from"), loop_config.get("resume_storage_options"))
    if restored:
        weights, saved, state = restored
        model.load_state_dict(weights)
        state["restores"] += 1
    # Judged again on restore: a finished run started with more epochs goes on.
    if state["bad_epochs"] >= tc.early_stop or state["epoch"] >= tc.epochs:
        return
    model = worker.prepare_model(model)  # to the device, wrapped in DDP when world > 1
    raw = model.module if hasattr(model, "module") else model
    # The optimiser is built (and restored) after the move, so its state lives on the device.
    optimizer = _optimizer(raw, tc)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", patience=2) if tc.scheduler else None
    if saved is not None:
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler and saved.get("scheduler"):
            scheduler.load_state_dict(saved["scheduler"])

    pos_weight = torch.tensor(loop_config["pos_weight"], dtype=torch.float32, device=device)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight) if tc.loss == "bce" else nn.CrossEntropyLoss()
    collate = ExampleCollate.for_model(cfg.model)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=train_precision(tc, device.type) == "bf16")

    for epoch in range(state["epoch"], tc.epochs):
        started = time.time()
        model.train()
        losses, seen = [], 0
        for batch in worker.train_batches(tc.batch_size, seed=tc.seed + epoch):
            x, y = collate(batch)
            x, y = x.to(device), y.to(device)
            with autocast:
                logits = model(x)
            loss = loss_fn(logits.float(), y if tc.loss == "bce" else y.argmax(1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if tc.clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), tc.clip)
            optimizer.step()
            losses.append(loss.item())
            seen += y.shape[0]
        train_s = time.time() - started
        totals = torch.tensor([sum(losses), len(losses), seen, train_s], dtype=torch.float64)
        if world > 1:
            dist.all_reduce(totals)
        row = {"epoch": epoch, "train_loss": float(totals[0] / max(1, totals[1])),
               "train_utterances": int(totals[2]), "train_seconds": train_s,
               "train_utterances_per_s_per_worker": float(totals[2] / max(1e-9, totals[3]))}

        decision = [None]
        if rank == 0:
            decision = [_evaluate_epoch(raw, cfg, loop_config, collate, device, row, state, epoch, worker)]
        if world > 1:
            dist.broadcast_object_list(decision, src=0)
        row, state = decision[0]
        if scheduler:
            scheduler.step(row["valid_avg_f1"])
        with tempfile.TemporaryDirectory() as folder:
            if rank == 0:
                _save(folder, raw, optimizer, scheduler, state, row, cfg, loop_config)
            worker.report(row, folder if rank == 0 else None, f"checkpoint_epoch_{epoch:03d}")
        if state.get("finished"):
            break


def validation_predictor(raw, cfg: Config, device, collate: ExampleCollate | None = None) -> Predictor:
    """The model as scoring will load it from this epoch's checkpoint: a folded (RepVGG
    single-branch) eval copy, with the activation the checkpoint records for this loss."""
    folded = copy.deepcopy(raw).reparameterize().eval()
    return Predictor(folded, cfg.model, activation=activation_for_loss(cfg.train.loss), device=device,
                     dtype=autocast_dtype(train_precision(cfg.train, torch.device(device).type)),
                     collate=collate.collate if collate else None)


def _evaluate_epoch(raw, cfg, loop_config, collate, device, row, state, epoch, worker):
    predictor = validation_predictor(raw, cfg, device, collate)
    emotions, dataset = list(cfg.model.emotions), loop_config["dataset"]
    started = time.time()
    probs, targets = predict(predictor, worker.eval_batches("valid"), collate)
    valid_metrics, thresholds = evaluate(probs, targets, emotions, dataset, None, cfg.train.loss)
    probs, targets = predict(predictor, worker.eval_batches("test"), collate)
    test_metrics, _ = evaluate(probs, targets, emotions, dataset, thresholds, cfg.train.loss)
    row = {**row, **{f"valid_{k}": v for k, v in valid_metrics.items()},
           **{f"test_{k}": v for k, v in test_metrics.items()}, "eval_seconds": time.time() - started,
           "thresholds": [float(t) for t in thresholds]}
    state = {**state, "epoch": epoch + 1, "rows": [*state["rows"], row]}
    f1 = row["valid_avg_f1"]
    # Ties go to the later epoch: on a small validation split F1 saturates while training improves.
    if f1 >= state["best_f1"]:
        state.update(best_f1=f1, best_epoch=epoch, bad_epochs=0)
    else:
        state["bad_epochs"] += 1
    state["finished"] = state["bad_epochs"] >= cfg.train.early_stop or epoch + 1 >= cfg.train.epochs
    row = {**row, "best_epoch": state["best_epoch"], "restores": state["restores"]}
    state["rows"][-1] = row
    return row, state


def save_model(path: str, raw, cfg: Config, row: dict, dataset: str, single_label: bool = False) -> str:
    """Write an epoch's model checkpoint: its validated thresholds, the activation of its loss, its
    decision (the argmax for a model trained on single-label data, where every utterance has one
    emotion; else the thresholds) and the epoch's metrics; returns the model id."""
    extra = {"epoch": row["epoch"], "loss": cfg.train.loss, "dataset": dataset, "single_label": single_label,
             "valid": {k[6:]: v for k, v in row.items() if k.startswith("valid_")},
             "test": {k[5:]: v for k, v in row.items() if k.startswith("test_")}}
    activation = activation_for_loss(cfg.train.loss)
    return save_checkpoint(path, raw, thresholds=row["thresholds"], activation=activation,
                           decision="argmax" if single_label else default_decision(activation), extra=extra)


def _save(folder, raw, optimizer, scheduler, state, row, cfg, loop_config) -> None:
    save_model(os.path.join(folder, "model.safetensors"), raw, cfg, row, loop_config["dataset"],
               loop_config.get("single_label", False))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler else None},
               os.path.join(folder, "train_state.pt"))
    Path(folder, "state.json").write_text(json.dumps(state))
