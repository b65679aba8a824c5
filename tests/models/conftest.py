import numpy as np
import pytest
import torch

from fv2es.config import config_from_dict
from fv2es.models import Collate, create_model


@pytest.fixture(scope="session")
def tiny_config():
    return config_from_dict({"model": {"preset": "fv2es_tiny"}}).model


@pytest.fixture(scope="session")
def collate(tiny_config):
    return Collate(tiny_config.text_model, tiny_config.text_max_len)


@pytest.fixture()
def tiny_model(tiny_config):
    torch.manual_seed(0)
    return create_model(tiny_config)


def make_sample(rng, frames, pieces, text="I am so happy today"):
    return {
        "text": text,
        "faces": rng.integers(0, 256, (frames, 48, 48, 3), dtype=np.uint8) if frames else None,
        "pieces": rng.random((pieces, 4, 32, 32), dtype=np.float32) if pieces else None,
    }
