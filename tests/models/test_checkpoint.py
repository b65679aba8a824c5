import dataclasses

import numpy as np
import pytest
import torch

from fv2es.models import create_model, load_checkpoint, save_checkpoint

from .conftest import make_sample


def test_round_trip_rebuilds_the_model_from_the_file_alone(tiny_config, collate, tmp_path):
    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_config, emotions=("a", "b", "c"), modalities="tav")
    model = create_model(cfg).eval()
    x = collate([make_sample(np.random.default_rng(0), 3, 4), make_sample(np.random.default_rng(1), 1, 2)])
    with torch.no_grad():
        expected = model(x)
    uri = str(tmp_path / "ckpt.safetensors")
    model_id = save_checkpoint(uri, model, thresholds=[0.3, 0.5, 0.7], extra={"epoch": 4})
    ckpt = load_checkpoint(uri)
    assert ckpt.config == cfg
    assert ckpt.thresholds == [0.3, 0.5, 0.7]
    assert ckpt.extra == {"epoch": 4}
    assert ckpt.model_id == model_id and len(model_id) == 16
    assert ckpt.model.reparameterized and not ckpt.model.training
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(x), expected, atol=1e-4, rtol=1e-4)
    # the training form comes back too, parameter for parameter
    trainable = load_checkpoint(uri, inference=False).model
    for (n1, p1), (n2, p2) in zip(model.state_dict().items(), trainable.state_dict().items()):
        assert n1 == n2 and torch.equal(p1, p2)


def test_a_loaded_model_keeps_its_weights_when_the_file_is_overwritten_in_place(tiny_config, tmp_path):
    """A local checkpoint is memory-mapped to load, but the model holds its own copy: writing
    another model's bytes over the file (``cp`` does, in place) leaves the loaded weights as read."""
    torch.manual_seed(0)
    first = create_model(tiny_config).eval()
    torch.manual_seed(1)
    second = create_model(tiny_config).eval()
    path, other = tmp_path / "model.safetensors", tmp_path / "other.safetensors"
    save_checkpoint(str(path), first)
    save_checkpoint(str(other), second)
    loaded = load_checkpoint(str(path), inference=False).model
    assert other.stat().st_size == path.stat().st_size
    with open(path, "r+b") as f:  # the same inode, new contents
        f.write(other.read_bytes())
    changed = [n for n, p in first.state_dict().items() if not torch.equal(p, second.state_dict()[n])]
    assert changed  # the two files differ ...
    for name, p in loaded.state_dict().items():  # ... and the loaded model is still the first
        assert torch.equal(p, first.state_dict()[name]), name


def test_inference_form_checkpoint_and_fsspec_uri(tiny_config, collate):
    torch.manual_seed(0)
    model = create_model(dataclasses.replace(tiny_config, modalities="av")).eval().reparameterize()
    x = collate([make_sample(np.random.default_rng(2), 2, 2)])
    with torch.no_grad():
        expected = model(x)
    uri = "memory://fv2es-tests/folded.safetensors"
    save_checkpoint(uri, model)
    ckpt = load_checkpoint(uri)
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(x), expected)
    assert ckpt.thresholds is None
    with pytest.raises(ValueError, match="inference form"):
        load_checkpoint(uri, inference=False)


def test_not_a_checkpoint_is_refused_clearly(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x05\x00\x00\x00\x00\x00\x00\x00hello")
    with pytest.raises(ValueError, match="not an fv2es checkpoint"):
        load_checkpoint(str(junk))
    junk.write_bytes(b"\x03\x00\x00\x00\x00\x00\x00\x00[1]")  # JSON, but not a header
    with pytest.raises(ValueError, match="not an fv2es checkpoint"):
        load_checkpoint(str(junk))
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="not an fv2es checkpoint"):
        load_checkpoint(str(plain))


def run_cli(*args: str, cwd=None):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "fv2es.cli", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


@pytest.fixture()
def saved(tiny_model, tmp_path):
    """One tiny checkpoint's bytes, and a run folder laid out as `fv2es train` leaves it."""
    save_checkpoint(str(tmp_path / "one.safetensors"), tiny_model)
    data = (tmp_path / "one.safetensors").read_bytes()
    run = tmp_path / "runs" / "demo"
    for epoch in (3, 4):
        (run / f"checkpoint_epoch_{epoch:03d}").mkdir(parents=True)
        (run / f"checkpoint_epoch_{epoch:03d}" / "model.safetensors").write_bytes(data)
    return data, run


def test_a_folder_resolves_to_its_checkpoint_file_and_says_which(saved, tmp_path, caplog, monkeypatch):
    from fv2es.models.checkpoint import read_checkpoint_info, resolve_checkpoint

    data, run = saved
    epoch = run / "checkpoint_epoch_003"
    with caplog.at_level("INFO", logger="fv2es"):
        # A run still training (no best.safetensors yet): its newest epoch's model.
        assert resolve_checkpoint(str(run)) == f"{run}/checkpoint_epoch_004/model.safetensors"
        (run / "best.safetensors").write_bytes(data)
        assert resolve_checkpoint(str(run) + "/") == f"{run}/best.safetensors"
        assert resolve_checkpoint(str(epoch)) == f"{epoch}/model.safetensors"
        assert resolve_checkpoint(f"{epoch}/model.safetensors") == f"{epoch}/model.safetensors"
    assert [r.getMessage() for r in caplog.records] == [
        f"checkpoint: using {run}/checkpoint_epoch_004/model.safetensors (no best.safetensors yet: the newest epoch's)",
        f"checkpoint: using {run}/best.safetensors",
        f"checkpoint: using {epoch}/model.safetensors"]
    monkeypatch.chdir(tmp_path)  # a relative path comes back absolute: workers open it elsewhere
    assert resolve_checkpoint("runs/demo") == f"{run}/best.safetensors"
    # Every reader goes through it: a folder loads as its file.
    assert read_checkpoint_info(str(run)).model_id == read_checkpoint_info(str(run / "best.safetensors")).model_id
    assert load_checkpoint("runs/demo").model_id == read_checkpoint_info(str(run)).model_id
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="a folder without a checkpoint"):
        resolve_checkpoint("empty")
    # In an object store, a prefix is a folder.
    save_checkpoint("memory://fv2es-resolve/run/best.safetensors", create_model(load_checkpoint(str(run)).config))
    assert resolve_checkpoint("memory://fv2es-resolve/run") == "memory://fv2es-resolve/run/best.safetensors"


def test_checkpoint_folders_and_broken_files_through_the_cli(saved, tmp_path):
    """What a user meets (exit 2, one line, no traceback), each failing before any Ray work."""
    data, run = saved
    (run / "best.safetensors").write_bytes(data)
    proc = run_cli("evaluate", "--checkpoint", "runs/demo", "--data", "nowhere", cwd=tmp_path)
    assert proc.stdout.splitlines()[0] == f"checkpoint: using {run}/best.safetensors"
    assert proc.returncode == 2 and proc.stderr.splitlines() == [
        "fv2es evaluate: nowhere: no metadata.json; is this an `fv2es preprocess` output?"]
    (tmp_path / "empty").mkdir()
    truncated = tmp_path / "cut.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    for checkpoint, line in [
        ("empty", f"fv2es evaluate: {tmp_path}/empty: a folder without a checkpoint (no best.safetensors or "
                  f"model.safetensors, no checkpoint_epoch_NNN/model.safetensors); give the checkpoint file"),
        ("cut.safetensors", f"fv2es evaluate: {truncated}: truncated or corrupt checkpoint ({len(data) // 2:,d} "
                            f"bytes; its header describes {len(data):,d}); copy or write it again"),
    ]:
        proc = run_cli("evaluate", "--checkpoint", checkpoint, "--data", "nowhere", cwd=tmp_path)
        assert (proc.returncode, proc.stderr.splitlines()) == (2, [line])
        assert "Traceback" not in proc.stderr + proc.stdout
