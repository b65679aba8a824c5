import dataclasses
import json
import logging
import shlex

import pyarrow.parquet as pq
import pytest

from fv2es.cli import main
from fv2es.models import load_checkpoint
from fv2es.train.evaluate import run_evaluate
from fv2es.train.job import TrainRequest, run_train
from fv2es.train.loop import FAULT_EPOCH_ENV, FAULT_MARKER_ENV

pytestmark = pytest.mark.slow


def configured(cfg, **train):
    return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train))


def with_modalities(cfg, modalities):
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, modalities=modalities))


def metrics_rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("modalities", ["t", "a", "v", "tav"])
def test_it_learns_each_modality_alone_and_together(demo_shards, tiny_cfg, modalities):
    """End to end: decoding, faces, spectrograms, text, labels, loss and metrics wired right."""
    cfg = configured(with_modalities(tiny_cfg, modalities), epochs=6, early_stop=6)
    best = run_train(cfg, TrainRequest(str(demo_shards / "shards"), str(demo_shards / "runs"), f"learn-{modalities}"))
    assert best["test_acc"] >= 0.9, best
    rows = metrics_rows(demo_shards / "runs" / f"learn-{modalities}")
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


def test_two_workers_one_metrics_row_per_epoch(demo_shards, tiny_cfg, caplog):
    cfg = configured(with_modalities(tiny_cfg, "av"), epochs=2, num_workers=2, worker_cpus=0.5)
    with caplog.at_level(logging.INFO, logger="fv2es"):
        best = run_train(cfg, TrainRequest(str(demo_shards / "shards"), str(demo_shards / "runs"), "ddp"))
    run = demo_shards / "runs" / "ddp"
    table = pq.read_table(str(run / "metrics.parquet")).to_pylist()
    assert [r["epoch"] for r in table] == [0, 1]
    for row in table:
        assert row["train_utterances"] == 60  # both workers' shards together: the whole train split
        assert {"train_loss", "valid_avg_f1", "valid_acc", "test_avg_f1", "test_acc", "test_avg_auc"} <= set(row)
    assert "best checkpoint: " in caplog.text and "test: acc" in caplog.text
    ckpt = load_checkpoint(best["best_checkpoint"])
    assert ckpt.thresholds == best["thresholds"] and ckpt.extra["epoch"] == best["epoch"]
    # Evaluate-only on the best checkpoint reproduces the run's test metrics with its thresholds.
    again = run_evaluate(best["best_checkpoint"], str(demo_shards / "shards"), "test")
    for key in ("acc", "avg_f1", "avg_auc"):
        assert again[key] == pytest.approx(best[f"test_{key}"], abs=1e-6)


def test_worker_killed_mid_training_resumes_from_checkpoint(demo_shards, tiny_cfg, tmp_path, monkeypatch):
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_EPOCH_ENV, "2")
    monkeypatch.setenv(FAULT_MARKER_ENV, str(marker))
    cfg = configured(with_modalities(tiny_cfg, "v"), epochs=3)
    run_train(cfg, TrainRequest(str(demo_shards / "shards"), str(tmp_path / "runs"), "faulty"))
    assert marker.read_text() == "killed at epoch 2\n"
    rows = metrics_rows(tmp_path / "runs" / "faulty")
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    # Epoch 2 ran after a restore, from the last checkpoint the controller had registered when the
    # worker died (epoch 1's, or epoch 0's if epoch 1's report was still in flight).
    assert rows[0]["restores"] == 0 and rows[-1]["restores"] == 1
    assert len({r["epoch"] for r in rows}) == 3


def test_same_name_continues_a_stopped_run(demo_shards, tiny_cfg, tmp_path):
    shards, runs = str(demo_shards / "shards"), str(tmp_path / "runs")
    cfg = with_modalities(tiny_cfg, "a")
    run_train(configured(cfg, epochs=1), TrainRequest(shards, runs, "cont"))
    best = run_train(configured(cfg, epochs=2), TrainRequest(shards, runs, "cont"))
    rows = metrics_rows(tmp_path / "runs" / "cont")
    assert [r["epoch"] for r in rows] == [0, 1] and rows[1]["restores"] == 1
    assert best["epoch"] in (0, 1)


def test_evaluate_only_modes(demo_shards, tmp_path, capsys):
    best = demo_shards / "runs" / "learn-tav" / "best.safetensors"
    if not best.exists():
        pytest.skip("needs the learning check's run")
    shards = str(demo_shards / "shards")
    assert main(["train", "--datapath", shards, "--valid", "--test", "--ckpt", str(best)]) == 0
    out = capsys.readouterr().out
    assert "valid: 12 utterances" in out and "test: 18 utterances" in out
    path = tmp_path / "m.json"
    assert main(["evaluate", "--checkpoint", str(best), "--data", shards, "--json", str(path)]) == 0
    metrics = json.loads(path.read_text())
    assert metrics["utterances"] == 18 and metrics["acc"] >= 0.9
    assert main(["train", "--datapath", shards, "--test"]) == 2
    assert "--ckpt" in capsys.readouterr().err


def test_the_seed_readme_command_runs(demo_shards, tmp_path, capsys):
    """The seed README's training command, with `fv2es train` for `python main.py` and --datapath at
    our shards. ALBERT is not shipped offline, so the packaged MiniLM stands in, and one epoch of
    the paper model on CPU proves the wiring (the full recipe is 30 epochs)."""
    seed = shlex.split("-lr=4.5e-6 -ep=30 -mod=tav -bs=2 --img-interval=500 --early-stop=6 --loss=bce --cuda=0 "
                       "--model=mme2e --num-emotions=6 --trans-dim=64 --trans-nlayers=4 --trans-nheads=4 "
                       "--text-lr-factor=10 --text-model-size=base --text-max-len=100")
    ours = ["--datapath", str(demo_shards / "shards"), "--output", str(tmp_path / "runs"), "--name", "seed",
            "model.text_model=minilm", "train.epochs=1"]
    assert main(["train", *seed, *ours]) == 0
    captured = capsys.readouterr()
    assert "training fv2es_paper (tav)" in captured.out and "best checkpoint:" in captured.out
    rows = metrics_rows(tmp_path / "runs" / "seed")
    assert len(rows) == 1
    ckpt = load_checkpoint(str(tmp_path / "runs" / "seed" / "best.safetensors"))
    assert (ckpt.config.trans_dim, ckpt.config.trans_nlayers, ckpt.config.text_max_len) == (64, 4, 100)
    assert ckpt.config.audio_depths == (2, 2, 20)


def test_run_and_checkpoints_on_s3(demo_shards, tiny_cfg, s3_endpoint):
    """Ray Train storage, metrics and best checkpoint on a real S3 endpoint (moto on 127.0.0.1)."""
    import fsspec

    cfg = configured(with_modalities(tiny_cfg, "a"), epochs=1)
    req = TrainRequest(str(demo_shards / "shards"), "s3://data/runs", "s3run", storage_options=s3_endpoint)
    best = run_train(cfg, req)
    assert best["best_checkpoint"] == "s3://data/runs/s3run/best.safetensors"
    s3 = fsspec.filesystem("s3", **s3_endpoint)
    assert s3.exists("data/runs/s3run/checkpoint_epoch_000/model.safetensors")
    assert s3.exists("data/runs/s3run/checkpoint_epoch_000/train_state.pt")
    with s3.open("data/runs/s3run/metrics.jsonl") as f:
        assert [json.loads(line)["epoch"] for line in f.read().decode().splitlines()] == [0]
    ckpt = load_checkpoint(best["best_checkpoint"], storage_options=s3_endpoint)
    assert ckpt.config.modalities == "a" and len(ckpt.thresholds) == 6
