"""A run folder's checkpoints before a run continues (no Ray: folders laid out as Ray Train leaves them)."""

import json
import logging

import pytest
import torch
from safetensors.torch import save

from fv2es.config import to_dict
from fv2es.errors import CheckpointError
from fv2es.models.checkpoint import FORMAT
from fv2es.models.config import ModelConfig
from fv2es.train.run import RAY_SNAPSHOT, RunFolder

MODEL = save({"w": torch.zeros(256)}, metadata={"format": FORMAT, "model_config": json.dumps(to_dict(ModelConfig())),
                                                "reparameterized": "false"})


def write_epoch(run, epoch, best_epoch):
    folder = run / f"checkpoint_epoch_{epoch:03d}"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(MODEL)
    torch.save({"optimizer": {}}, folder / "train_state.pt")
    (folder / "state.json").write_text(json.dumps({"epoch": epoch + 1, "best_epoch": best_epoch}))


def write_run(run, epochs=(0, 1, 2), best_epoch=1):
    for epoch in epochs:
        write_epoch(run, epoch, best_epoch)
    (run / RAY_SNAPSHOT).write_text(json.dumps({"checkpoint_results": [
        {"checkpoint_dir_name": f"checkpoint_epoch_{e:03d}"} for e in epochs]}))


def test_an_intact_or_new_run_is_left_to_ray(tmp_path):
    assert RunFolder(str(tmp_path / "new")).prepare_resume() is None
    write_run(tmp_path / "ok")
    assert RunFolder(str(tmp_path / "ok")).prepare_resume() is None
    assert sorted(p.name for p in (tmp_path / "ok").iterdir())[-1] == RAY_SNAPSHOT  # untouched


@pytest.mark.parametrize("damage, message", [
    ("truncated", "checkpoint_epoch_002 is broken (checkpoint_epoch_002/model.safetensors: truncated or corrupt "
                  f"checkpoint ({len(MODEL) - 100:,d} bytes; its header describes {len(MODEL):,d}); copy or write "
                  "it again): continuing from checkpoint_epoch_001"),
    ("optimiser", "checkpoint_epoch_002 is broken (File is not a zip file): continuing from checkpoint_epoch_001"),
    ("deleted", "checkpoint_epoch_002 is missing: continuing from checkpoint_epoch_001"),
    ("snapshot", f"Ray Train's {RAY_SNAPSHOT} is missing or unreadable: continuing from checkpoint_epoch_002"),
])
def test_a_broken_last_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, caplog, monkeypatch, damage,
                                                                     message):
    run = tmp_path / "runs" / "r"
    write_run(run)
    last = run / "checkpoint_epoch_002"
    if damage == "truncated":
        (last / "model.safetensors").write_bytes(MODEL[:-100])
    elif damage == "optimiser":
        (last / "train_state.pt").write_bytes((last / "train_state.pt").read_bytes()[:50])
    elif damage == "deleted":
        for f in last.iterdir():
            f.unlink()
        last.rmdir()
    else:
        (run / RAY_SNAPSHOT).write_text('{"checkpoint_results": [')
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.WARNING, logger="fv2es"):
        resume = RunFolder("runs/r").prepare_resume()
    assert caplog.records[-1].getMessage() == f"runs/r: {message}, the newest intact checkpoint"
    kept = "checkpoint_epoch_002" if damage == "snapshot" else "checkpoint_epoch_001"
    assert resume == f"{run}/{kept}"  # absolute: the training workers run in other folders
    # The broken folder and Ray's record of it are gone: Ray starts clean, the loop goes on from `resume`.
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint_epoch_000", "checkpoint_epoch_001"] + (
        ["checkpoint_epoch_002"] if damage == "snapshot" else [])


def test_no_intact_checkpoint_is_one_error(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "r"
    write_run(run, epochs=(0,))
    (run / "checkpoint_epoch_000" / "state.json").write_text("{")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError) as caught:
        RunFolder("runs/r").prepare_resume()
    assert str(caught.value) == ("runs/r: no intact checkpoint to continue from (checkpoint_epoch_000 is broken "
                                 "(Expecting property name enclosed in double quotes: line 1 column 2 (char 1))); "
                                 "start a new run (another --name)")


def test_best_of_a_run_still_training_is_the_one_its_state_names(tmp_path):
    """Ray keeps the best epoch by the loop's own rule (ties: the later epoch)."""
    run = tmp_path / "r"
    write_run(run, epochs=(2, 3), best_epoch=2)
    assert RunFolder(str(run)).best_uri(best_epoch=0) == f"{run}/checkpoint_epoch_002/model.safetensors"
    (run / "best.safetensors").write_bytes(MODEL)
    assert RunFolder(str(run)).best_uri(best_epoch=0) == f"{run}/best.safetensors"
