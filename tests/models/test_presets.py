"""Every registered preset builds and runs (as timm's tests do over ``list_models()``), and a
branch architecture registered beside its module is selected by config alone."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from fv2es.config import config_from_dict
from fv2es.errors import ConfigError
from fv2es.models import Collate, create_model, get_preset, list_models, registry
from fv2es.models.registry import list_branches, register_branch

from .conftest import make_sample
from .seed_format import make_small_albert


@pytest.fixture(scope="module")
def albert(tmp_path_factory):
    folder = tmp_path_factory.mktemp("albert-presets")
    return str(folder), make_small_albert(folder)


def test_the_registry_lists_presets_and_architectures():
    assert {"fv2es_paper", "fv2es_tiny"} <= set(list_models())
    assert list_branches("audio") == ["nest"] and list_branches("visual") == ["repvgg"]
    assert list_branches("text") == ["hf"]
    paper = get_preset("fv2es_paper")
    assert (paper.text_arch, paper.audio_arch, paper.visual_arch) == ("hf", "nest", "repvgg")
    # the seed's network: 3x3 NesT patch embedding, timm's default drop path 0.5
    assert (paper.audio_patch_kernel, paper.audio_drop_path) == (3, 0.5)


@pytest.mark.parametrize("name", list_models())
def test_every_preset_builds_and_runs_a_small_batch(name, albert):
    folder, text_config = albert
    cfg = config_from_dict({"model": {"preset": name, "text_model": folder}}).model
    assert cfg.preset == name and registry._PRESETS[name].__doc__
    torch.manual_seed(0)
    model = create_model(cfg, pretrained_text=False, text_config=text_config).eval()
    rng = np.random.default_rng(0)
    batch = Collate(folder, 8)([make_sample(rng, 2, 1, text="i am happy"), make_sample(rng, 1, 2, text="")])
    with torch.no_grad():
        logits = model(batch)
        per_mod, present = model.modality_logits(batch)
        model.reparameterize()
        folded = model(batch)
    assert logits.shape == (2, cfg.num_emotions) and torch.isfinite(logits).all()
    assert per_mod.shape == (2, cfg.num_emotions, 3)
    assert present.tolist() == [[True, True, True], [False, True, True]]  # t, v, a
    torch.testing.assert_close(folded, logits, atol=1e-4, rtol=1e-4)


class MeanFace(nn.Module):
    """A deliberately small visual branch: mean colour of the crop -> out_dim."""

    def __init__(self, out_dim: int):
        super().__init__()
        self.proj = nn.Linear(3, out_dim)

    def forward(self, faces: torch.Tensor) -> torch.Tensor:
        return self.proj(faces.mean(dim=(2, 3)))


def test_a_new_branch_is_a_registered_builder_plus_config(tiny_config, collate):
    @register_branch("visual", "mean_face")
    def mean_face(config, *, out_dim):
        return MeanFace(out_dim)

    try:
        cfg = config_from_dict({"model": {"preset": "fv2es_tiny", "visual_arch": "mean_face"}}).model
        model = create_model(cfg).eval()
        assert isinstance(model.visual, MeanFace) and model.reparameterized  # nothing to fold
        x = collate([make_sample(np.random.default_rng(1), 3, 2)])
        with torch.no_grad():
            assert model.reparameterize()(x).shape == (1, 6)
    finally:
        registry._BRANCHES["visual"].pop("mean_face")
    with pytest.raises(ConfigError, match="unknown visual architecture 'mean_face'"):
        create_model(dataclasses.replace(tiny_config, visual_arch="mean_face"))
