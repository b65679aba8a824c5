"""`fv2es train` as a user meets it when something it needs is wrong: exit 2, one line, no traceback,
no run folder left; each fails on the driver before Ray starts (a shards folder's metadata is all
these need). A subprocess where the environment matters (the Hugging Face cache), else in this process."""

import json
import os
import subprocess
import sys

import pytest

from fv2es.emotions import IEMOCAP_EMOTIONS


def run_cli(*args, cwd, env=None):
    return subprocess.run([sys.executable, "-m", "fv2es.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**os.environ, **(env or {})})


@pytest.fixture()
def shards(tmp_path):
    """What `fv2es train` reads before anything else: a preprocess output's metadata.json."""
    folder = tmp_path / "shards"
    folder.mkdir()
    (folder / "metadata.json").write_text(json.dumps({
        "dataset": "manifest", "emotions": list(IEMOCAP_EMOTIONS),
        "split_rows": {"train": 42, "valid": 6, "test": 12}}))
    return folder


def only_line(proc):
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc.returncode, proc.stderr.splitlines()


@pytest.fixture()
def train_here(tmp_path, monkeypatch, capsys):
    """``train_here(*args)``: ``fv2es train ARGS`` through ``fv2es.cli.main`` in this process, run
    from ``tmp_path`` (a subprocess would cost a torch import per case; the one-line contract is the
    same); returns (exit code, stderr lines)."""
    from fv2es.cli import main

    monkeypatch.chdir(tmp_path)

    def run(*args):
        capsys.readouterr()
        code = main(["train", *args])
        captured = capsys.readouterr()
        assert "Traceback" not in captured.err + captured.out
        return code, captured.err.splitlines()

    return run


def test_albert_offline_fails_on_the_driver_with_no_run_folder(shards, tmp_path):
    # An empty Hugging Face cache: ALBERT is not there (it never is offline in these tests).
    proc = run_cli("train", "--datapath", "shards", "--output", "runs", "--name", "r", "--text-model-size=base",
                   cwd=tmp_path, env={"HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"})
    assert only_line(proc) == (2, [
        "fv2es train: config error: model.text_model=albert-base-v2: not available offline: give a folder holding "
        "it (model.text_model=/path/to/albert-base-v2), put it in the Hugging Face cache, or use the packaged "
        "model.text_model=minilm"])
    assert not (tmp_path / "runs").exists()


def test_ckpt_is_resolved_and_checked_on_the_driver(shards, tmp_path, train_here):
    """A relative --ckpt names a file in the user's folder, not the worker's; a broken one fails here."""
    import torch
    from safetensors.torch import save

    (tmp_path / "ckpts").mkdir()
    whole = save({"w": torch.zeros(1000)}, metadata={"format": "fv2es-checkpoint/1"})
    (tmp_path / "ckpts" / "cut.safetensors").write_bytes(whole[:-1000])  # a copy cut short
    for ckpt, line in [
        ("ckpts/missing.safetensors", f"fv2es train: not found: {tmp_path}/ckpts/missing.safetensors"),
        ("ckpts", f"fv2es train: {tmp_path}/ckpts: a folder without a checkpoint (no best.safetensors or "
                  "model.safetensors, no checkpoint_epoch_NNN/model.safetensors); give the checkpoint file"),
        ("ckpts/cut.safetensors", f"fv2es train: {tmp_path}/ckpts/cut.safetensors: truncated or corrupt checkpoint "
                                  f"({len(whole) - 1000:,d} bytes; its header describes {len(whole):,d}); copy or "
                                  "write it again"),
    ]:
        assert train_here("--datapath", "shards", "--output", "runs", "--ckpt", ckpt, "model.text_model=minilm") \
            == (2, [line])
    assert not (tmp_path / "runs").exists()


def test_a_run_with_no_intact_checkpoint_and_an_empty_split_fail_in_one_line(shards, tmp_path, train_here):
    run = tmp_path / "runs" / "r"
    (run / "checkpoint_epoch_000").mkdir(parents=True)
    (run / "checkpoint_epoch_000" / "model.safetensors").write_bytes(b"\x00" * 4)  # cut short when written
    code, lines = train_here("--datapath", "shards", "--output", "runs", "--name", "r", "model.text_model=minilm")
    assert code == 2 and len(lines) == 1
    assert lines[0].startswith("fv2es train: runs/r: no intact checkpoint to continue from (checkpoint_epoch_000 "
                               "is broken (")
    assert lines[0].endswith("); start a new run (another --name)")
    # 30 demo clips used to leave a class out of the validation split; a split with no usable example
    # at all is still refused, before Ray.
    meta = json.loads((shards / "metadata.json").read_text())
    (shards / "metadata.json").write_text(json.dumps({**meta, "split_rows": {"train": 42, "valid": 0, "test": 1}}))
    assert train_here("--datapath", "shards", "--output", "runs", "--name", "fresh", "model.text_model=minilm") == (2, [
        "fv2es train: shards: no usable examples in the valid split(s); validation picks thresholds and the best "
        "epoch, so each split needs examples"])
    assert not (tmp_path / "runs" / "fresh").exists()
