"""The training job under Ray Train: two DDP workers with one killed mid-run, and a run continued
by name (on S3). (What the loop learns is checked in this process: test_loop.py.)"""

import json
import logging
import os
import signal
import threading
import time

import pyarrow.parquet as pq
import pytest

from fv2es.models import load_checkpoint
from fv2es.train.evaluate import run_evaluate
from fv2es.train.job import TrainRequest, run_train

pytestmark = pytest.mark.slow


def metrics_rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def kill_worker_after_first_checkpoint(run, killed: list, timeout_s: float = 900) -> None:
    """A real fault: once Ray Train has registered the run's first checkpoint, SIGKILL one of its
    worker processes (as the OOM killer would): a `ray::RayTrainWorker` process among this test's
    own descendants (our Ray's raylet started it)."""
    snapshot = run / "checkpoint_manager_snapshot.json"
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        if snapshot.exists() and "checkpoint_epoch_000" in snapshot.read_text():
            break
        time.sleep(0.2)
    parents, titles = {}, {}
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                titles[int(entry)] = f.read().decode(errors="replace")
        except (ValueError, OSError):
            continue

    def ours(pid):
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    for pid, title in titles.items():
        if title.startswith("ray::RayTrainWorker") and ours(pid):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return


def test_two_workers_one_killed_mid_training_resume_from_checkpoint(demo_shards, train_cfg, tmp_path, caplog):
    """DDP: two workers, one metrics row per epoch for both. One worker SIGKILLed after the first
    checkpoint: the worker group starts again from the last checkpoint and the run completes."""
    run, killed = tmp_path / "runs" / "ddp", []
    killer = threading.Thread(target=kill_worker_after_first_checkpoint, args=(run, killed), daemon=True)
    killer.start()
    cfg = train_cfg("av", epochs=3, num_workers=2, worker_cpus=0.5)
    with caplog.at_level(logging.INFO, logger="fv2es"):
        best = run_train(cfg, TrainRequest(str(demo_shards / "shards"), str(tmp_path / "runs"), "ddp"))
    killer.join(timeout=60)
    assert len(killed) == 1
    table = pq.read_table(str(run / "metrics.parquet")).to_pylist()
    assert [r["epoch"] for r in table] == [0, 1, 2]
    for row in table:
        assert row["train_utterances"] == 60  # both workers' shards together: the whole train split
        assert {"train_loss", "valid_avg_f1", "valid_acc", "test_avg_f1", "test_acc", "test_avg_auc"} <= set(row)
    assert "best checkpoint: " in caplog.text
    assert f"test: argmax accuracy {best['test_acc']:.4f}; thresholded per emotion, mean: F1 " in caplog.text
    ckpt = load_checkpoint(best["best_checkpoint"])
    assert ckpt.thresholds == best["thresholds"] and ckpt.extra["epoch"] == best["epoch"]
    # Evaluate-only on the best checkpoint reproduces the run's test metrics with its thresholds.
    again = run_evaluate(best["best_checkpoint"], str(demo_shards / "shards"), "test")
    for key in ("acc", "avg_f1", "avg_auc"):
        assert again[key] == pytest.approx(best[f"test_{key}"], abs=1e-6)

    rows = metrics_rows(run)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    # The epochs after the kill ran in a new worker group restored from the last checkpoint
    # registered before it (epoch 0's at least): epoch 0 ran once, the last epoch after one restore.
    assert rows[0]["restores"] == 0 and rows[-1]["restores"] == 1
    # train.keep_checkpoints=2: of the epochs' checkpoints, the best and the last stay.
    kept = sorted(p.name for p in run.glob("checkpoint_epoch_*"))
    assert kept == sorted({f"checkpoint_epoch_{best['epoch']:03d}", f"checkpoint_epoch_{rows[-1]['epoch']:03d}"})


def test_same_name_continues_a_stopped_run_on_s3(demo_shards, train_cfg, s3_endpoint, caplog):
    """Ray Train storage, metrics and checkpoints on a real S3 endpoint (moto on 127.0.0.1); the same
    name continues the run there, from the newest intact checkpoint when the last one is broken."""
    import fsspec

    shards, runs = str(demo_shards / "shards"), "s3://data/runs"
    s3 = fsspec.filesystem("s3", **s3_endpoint)

    def train(epochs):  # keep_checkpoints=0: every epoch's checkpoint stays
        return run_train(train_cfg("a", epochs=epochs, keep_checkpoints=0),
                         TrainRequest(shards, runs, "cont", storage_options=s3_endpoint))

    def rows():
        with s3.open("data/runs/cont/metrics.jsonl") as f:
            return [json.loads(line) for line in f.read().decode().splitlines()]

    best = train(1)
    assert best["best_checkpoint"] == "s3://data/runs/cont/best.safetensors"
    assert s3.exists("data/runs/cont/checkpoint_epoch_000/model.safetensors")
    assert s3.exists("data/runs/cont/checkpoint_epoch_000/train_state.pt")
    assert [r["epoch"] for r in rows()] == [0]
    ckpt = load_checkpoint(best["best_checkpoint"], storage_options=s3_endpoint)
    assert ckpt.config.modalities == "a" and len(ckpt.thresholds) == 6

    best = train(2)
    assert [r["epoch"] for r in rows()] == [0, 1] and rows()[1]["restores"] == 1
    assert best["epoch"] in (0, 1)
    # The last checkpoint cut short (a crash while it was written): the run goes on from the newest
    # intact one, and says so, instead of failing in Ray's checkpoint manager or in safetensors.
    last = "data/runs/cont/checkpoint_epoch_001/model.safetensors"
    data = s3.cat_file(last)
    cut = len(data) // 2
    s3.pipe_file(last, data[:cut])
    with caplog.at_level(logging.WARNING, logger="fv2es"):
        train(3)
    assert ("s3://data/runs/cont: checkpoint_epoch_001 is broken (checkpoint_epoch_001/model.safetensors: "
            f"truncated or corrupt checkpoint ({cut:,d} bytes; its header describes ") in caplog.text
    assert "continuing from checkpoint_epoch_000, the newest intact checkpoint" in caplog.text
    assert [(r["epoch"], r["restores"]) for r in rows()] == [(0, 0), (1, 1), (2, 1)]  # epoch 1 again, from 0
    # A folder deleted by hand, a missing snapshot: the same fallback (tests/train/test_run_folder.py).
