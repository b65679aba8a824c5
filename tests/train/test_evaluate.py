"""Evaluating a trained run's checkpoint: `fv2es train --valid --test --ckpt` and `fv2es evaluate`."""

import json

import pytest

from fv2es.cli import main

pytestmark = pytest.mark.slow


def test_evaluate_only_modes(demo_shards, learned, tmp_path, capsys):
    learned("tav")  # the learning check's run (trained once per session)
    best = demo_shards / "runs" / "learn-tav" / "best.safetensors"
    shards = str(demo_shards / "shards")
    capsys.readouterr()
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
