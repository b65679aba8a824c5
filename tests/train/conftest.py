import dataclasses

import pytest

from fv2es.config import load_config
from fv2es.media.democorpus import make_demo_corpus
from fv2es.preprocess import PreprocessRequest, run_preprocess


@pytest.fixture(scope="session")
def tiny_cfg():
    return load_config("configs/tiny.yaml", ["decode.max_side=320"])


@pytest.fixture(scope="session")
def train_cfg(tiny_cfg):
    """``train_cfg(modalities, **train)``: the tiny config on ``modalities`` with these ``train`` values."""

    def make(modalities: str, **train):
        return dataclasses.replace(tiny_cfg, model=dataclasses.replace(tiny_cfg.model, modalities=modalities),
                                   train=dataclasses.replace(tiny_cfg.train, **train))

    return make


@pytest.fixture(scope="session")
def demo_shards(tmp_path_factory, ray_cluster, tiny_cfg):
    """90 demo clips (15 per class, split 70/10/20 per class) preprocessed into shards, with the
    baselines' hand-crafted features, once per session (``demo/``: the corpus; ``shards/``: the
    preprocess output; ``runs/``: runs on them)."""
    root = tmp_path_factory.mktemp("train")
    manifest = make_demo_corpus(root / "demo", videos=90, seed=0, seconds=(1.5, 2.5))
    cfg = dataclasses.replace(tiny_cfg, data=dataclasses.replace(tiny_cfg.data, hand_crafted=True))
    run_preprocess(cfg, PreprocessRequest("manifest", str(manifest), str(root / "shards")))
    return root


@pytest.fixture(scope="session")
def learned(demo_shards, train_cfg):
    """``learned(modalities)``: the best row of a 6-epoch run on the demo shards, trained in this
    process (:func:`fv2es.train.local.train_in_process`) once per session into ``runs/learn-<modalities>``."""
    from fv2es.train.job import TrainRequest
    from fv2es.train.local import train_in_process

    runs: dict[str, dict] = {}

    def learn(modalities: str) -> dict:
        if modalities not in runs:
            req = TrainRequest(str(demo_shards / "shards"), str(demo_shards / "runs"), f"learn-{modalities}")
            runs[modalities] = train_in_process(train_cfg(modalities, epochs=6, early_stop=6), req)
        return runs[modalities]

    return learn
