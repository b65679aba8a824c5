"""End to end: a seed-format checkpoint of the real seed network (small ALBERT) is imported with
``fv2es import-seed`` and scores a generated video through ``fv2es score`` (issue 11)."""

import json

import pyarrow.parquet as pq
import pytest
import torch

from fv2es.cli import main
from fv2es.media.democorpus import make_demo_corpus

from .seed_format import make_small_albert, seed_training_state


@pytest.mark.slow
def test_imported_seed_checkpoint_scores_a_video(ray_cluster, tmp_path):
    albert = tmp_path / "albert"
    state = seed_training_state(make_small_albert(albert))
    seed_file = tmp_path / "mme2e_tav_seed0.pt"
    torch.save(state, seed_file)
    del state
    ckpt = tmp_path / "seed.safetensors"
    assert main(["import-seed", str(seed_file), "--output", str(ckpt), "--text-model", str(albert)]) == 0

    videos = tmp_path / "videos"
    make_demo_corpus(videos, videos=1, seed=0, seconds=(1.5, 1.5))
    out = tmp_path / "out"
    assert main(["score", "--input", str(videos), "--output", str(out), "--checkpoint", str(ckpt),
                 "decode.max_side=320"]) == 0
    rows = pq.read_table(str(out / "segments")).to_pylist()
    success = json.loads((out / "_SUCCESS").read_text())
    assert success["videos_ok"] == 1 and len(rows) == 1
    row = rows[0]
    assert row["status"] == "ok" and row["faces_found"] >= 1 and row["piece_count"] >= 1
    probs = [row[f"prob_{e}"] for e in ("ang", "exc", "fru", "hap", "neu", "sad")]
    assert all(0.0 <= p <= 1.0 for p in probs)
    # no thresholds in a seed checkpoint: 0.5 each
    assert row["predicted"] == [e for e, p in zip(("ang", "exc", "fru", "hap", "neu", "sad"), probs) if p >= 0.5]
