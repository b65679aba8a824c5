import pytest

from fv2es.config import load_config
from fv2es.media.democorpus import make_demo_corpus
from fv2es.preprocess import PreprocessRequest, run_preprocess


@pytest.fixture(scope="module")
def tiny_cfg():
    return load_config("configs/tiny.yaml", ["decode.max_side=320"])


@pytest.fixture(scope="module")
def demo_shards(tmp_path_factory, ray_cluster, tiny_cfg):
    """90 demo clips (15 per class, split 70/10/20 per class) preprocessed into shards."""
    root = tmp_path_factory.mktemp("train")
    manifest = make_demo_corpus(root / "demo", videos=90, seed=0, seconds=(1.5, 2.5))
    run_preprocess(tiny_cfg, PreprocessRequest("manifest", str(manifest), str(root / "shards")))
    return root
