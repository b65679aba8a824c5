import dataclasses
import json
import logging
import os
import shlex
import signal
import threading
import time

import pyarrow.parquet as pq
import pytest

from fv2es.cli import main
from fv2es.models import load_checkpoint
from fv2es.train.evaluate import run_evaluate
from fv2es.train.job import TrainRequest, run_train

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
    # train.keep_checkpoints=2: of six epochs' checkpoints, the best and the last stay.
    kept = sorted(p.name for p in (demo_shards / "runs" / f"learn-{modalities}").glob("checkpoint_epoch_*"))
    assert kept == sorted({f"checkpoint_epoch_{best['epoch']:03d}", f"checkpoint_epoch_{rows[-1]['epoch']:03d}"})


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
    assert "best checkpoint: " in caplog.text
    assert f"test: argmax accuracy {best['test_acc']:.4f}; thresholded per emotion, mean: F1 " in caplog.text
    ckpt = load_checkpoint(best["best_checkpoint"])
    assert ckpt.thresholds == best["thresholds"] and ckpt.extra["epoch"] == best["epoch"]
    # Evaluate-only on the best checkpoint reproduces the run's test metrics with its thresholds.
    again = run_evaluate(best["best_checkpoint"], str(demo_shards / "shards"), "test")
    for key in ("acc", "avg_f1", "avg_auc"):
        assert again[key] == pytest.approx(best[f"test_{key}"], abs=1e-6)


def kill_worker_after_first_checkpoint(run, killed: list, timeout_s: float = 900) -> None:
    """A real fault: once Ray Train has registered the run's first checkpoint, SIGKILL its worker
    process (as the OOM killer would): the `ray::RayTrainWorker` process among this test's own
    descendants (our Ray's raylet started it)."""
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


def test_worker_killed_mid_training_resumes_from_checkpoint(demo_shards, tiny_cfg, tmp_path):
    run, killed = tmp_path / "runs" / "faulty", []
    killer = threading.Thread(target=kill_worker_after_first_checkpoint, args=(run, killed), daemon=True)
    killer.start()
    cfg = configured(with_modalities(tiny_cfg, "v"), epochs=3)
    run_train(cfg, TrainRequest(str(demo_shards / "shards"), str(tmp_path / "runs"), "faulty"))
    killer.join(timeout=60)
    assert len(killed) == 1
    rows = metrics_rows(run)
    assert [r["epoch"] for r in rows] == [0, 1, 2]
    # The epochs after the kill ran in a new worker restored from the last checkpoint registered
    # before it (epoch 0's at least): epoch 0 ran once, the last epoch after one restore.
    assert rows[0]["restores"] == 0 and rows[-1]["restores"] == 1


def test_same_name_continues_a_stopped_run(demo_shards, tiny_cfg, tmp_path, caplog):
    shards, runs = str(demo_shards / "shards"), str(tmp_path / "runs")
    cfg = configured(with_modalities(tiny_cfg, "a"), keep_checkpoints=0)  # every epoch's checkpoint stays
    run_train(configured(cfg, epochs=1), TrainRequest(shards, runs, "cont"))
    best = run_train(configured(cfg, epochs=2), TrainRequest(shards, runs, "cont"))
    rows = metrics_rows(tmp_path / "runs" / "cont")
    assert [r["epoch"] for r in rows] == [0, 1] and rows[1]["restores"] == 1
    assert best["epoch"] in (0, 1)
    # The last checkpoint cut short (a crash while it was written): the run goes on from the newest
    # intact one, and says so, instead of failing in Ray's checkpoint manager or in safetensors.
    last = tmp_path / "runs" / "cont" / "checkpoint_epoch_001" / "model.safetensors"
    cut = len(last.read_bytes()) // 2
    last.write_bytes(last.read_bytes()[:cut])
    with caplog.at_level(logging.WARNING, logger="fv2es"):
        run_train(configured(cfg, epochs=3), TrainRequest(shards, runs, "cont"))
    assert (f"{tmp_path}/runs/cont: checkpoint_epoch_001 is broken (checkpoint_epoch_001/model.safetensors: "
            f"truncated or corrupt checkpoint ({cut:,d} bytes; its header describes ") in caplog.text
    assert "continuing from checkpoint_epoch_000, the newest intact checkpoint" in caplog.text
    rows = metrics_rows(tmp_path / "runs" / "cont")
    assert [(r["epoch"], r["restores"]) for r in rows] == [(0, 0), (1, 1), (2, 1)]  # epoch 1 again, from 0
    # A folder deleted by hand, a missing snapshot: the same fallback (tests/train/test_run_folder.py).


def test_evaluate_only_modes(demo_shards, tmp_path, capsys):
    best = demo_shards / "runs" / "learn-tav" / "best.safetensors"
    if not best.exists():
        pytest.skip("needs the learning check's run")
    shards = str(demo_shards / "shards")
    # The run folder stands for its best.safetensors, and the command says so.
    assert main(["train", "--datapath", shards, "--valid", "--test", "--ckpt", str(best.parent)]) == 0
    out = capsys.readouterr().out
    assert out.count(f"checkpoint: using {best}\n") == 1
    assert "valid: 12 utterances" in out and "test: 18 utterances" in out
    path = tmp_path / "m.json"
    assert main(["evaluate", "--checkpoint", str(best), "--data", shards, "--json", str(path)]) == 0
    metrics = json.loads(path.read_text())
    assert metrics["utterances"] == 18 and metrics["acc"] >= 0.9
    assert main(["train", "--datapath", shards, "--test"]) == 2
    assert "--ckpt" in capsys.readouterr().err


def one_clip_per_emotion_and_split(shards, out) -> str:
    """A copy of the shards with the first usable example of each (split, emotion): 18 rows."""
    import pyarrow as pa

    from fv2es.shards import ExampleShards

    table = ExampleShards(str(shards)).read(usable=True)
    first = {}
    for i, (split, labels) in enumerate(zip(table.column("split").to_pylist(), table.column("labels").to_pylist())):
        first.setdefault((split, tuple(labels)), i)
    small = table.take(pa.array(sorted(first.values())))
    (out / "examples").mkdir(parents=True)
    pq.write_table(small, str(out / "examples" / "part-00000.parquet"))
    meta = json.loads((shards / "metadata.json").read_text())
    meta["split_rows"] = {s: small.column("split").to_pylist().count(s) for s in ("train", "valid", "test")}
    (out / "metadata.json").write_text(json.dumps(meta))
    assert meta["split_rows"] == {"train": 6, "valid": 6, "test": 6}
    return str(out)


def test_the_seed_readme_command_runs(demo_shards, tmp_path, capsys):
    """The seed README's training command, with `fv2es train` for `python main.py` and --datapath at
    our shards. ALBERT is not shipped offline, so the packaged MiniLM stands in, and one epoch of
    the paper model on CPU proves the wiring (the full recipe is 30 epochs), on one clip of each
    emotion per split (the paper model's CPU time was most of this test's)."""
    seed = shlex.split("-lr=4.5e-6 -ep=30 -mod=tav -bs=2 --img-interval=500 --early-stop=6 --loss=bce --cuda=0 "
                       "--model=mme2e --num-emotions=6 --trans-dim=64 --trans-nlayers=4 --trans-nheads=4 "
                       "--text-lr-factor=10 --text-model-size=base --text-max-len=100")
    ours = ["--datapath", one_clip_per_emotion_and_split(demo_shards / "shards", tmp_path / "shards"),
            "--output", str(tmp_path / "runs"), "--name", "seed",
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
