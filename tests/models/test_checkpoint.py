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
    from safetensors.torch import save_file

    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(ValueError, match="not an fv2es checkpoint"):
        load_checkpoint(str(plain))
