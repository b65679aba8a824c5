"""The training loop learns: each modality alone and all three together, on the demo shards.

The loop runs in this process (:func:`fv2es.train.local.train_in_process`: the same loop, checks and
run folder as ``fv2es train``, without Ray); Ray Train around it is tested in test_train_job.py."""

import json

import pytest

pytestmark = pytest.mark.slow


def metrics_rows(run):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("modalities", ["t", "a", "v", "tav"])
def test_it_learns_each_modality_alone_and_together(demo_shards, learned, modalities):
    """End to end: decoding, faces, spectrograms, text, labels, loss and metrics wired right."""
    best = learned(modalities)
    assert best["test_acc"] >= 0.9, best
    run = demo_shards / "runs" / f"learn-{modalities}"
    rows = metrics_rows(run)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert [r["epoch"] for r in rows] == list(range(6)) and best["best_checkpoint"] == f"{run}/best.safetensors"
