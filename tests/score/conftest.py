import dataclasses

import pytest
import torch

from fv2es.config import config_from_dict
from fv2es.media.democorpus import make_demo_corpus
from fv2es.models import create_model, save_checkpoint


@pytest.fixture(scope="session")
def tiny_cfg():
    return config_from_dict({"model": {"preset": "fv2es_tiny"}, "decode": {"max_side": 320}})


@pytest.fixture(scope="session")
def no_asr_cfg(tiny_cfg):
    """``tiny_cfg`` with ``asr.mode=never``, for the jobs whose tests do not look at transcripts: no
    speech model loaded on the driver, no speech-to-text actor (captions and manifest text still count)."""
    return dataclasses.replace(tiny_cfg, asr=dataclasses.replace(tiny_cfg.asr, mode="never"))


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, tiny_cfg):
    """A freshly initialised tiny model (the training issue replaces it with a trained one)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.safetensors"
    save_checkpoint(str(path), create_model(tiny_cfg.model), thresholds=[0.5] * 6)
    return str(path)


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_demo_corpus(root, videos=6, seed=0, seconds=(1.5, 2.5))
    return root
