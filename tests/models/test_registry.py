"""The registry's contract, run over everything registered (as timm's tests run over
``list_models()``): every branch architecture builds from small widths, maps the model's input
geometry to features and folds where it offers to; every preset is a checked config that builds
and runs; a branch registered beside its module is selected by config alone."""

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from fv2es.config import config_from_dict
from fv2es.errors import ConfigError
from fv2es.models import Collate, create_model, get_preset, list_models, registry
from fv2es.models.registry import BRANCH_KINDS, get_branch, list_branches, register_branch

from .conftest import make_sample
from .seed_format import make_small_albert

BRANCHES = [(kind, name) for kind in BRANCH_KINDS for name in list_branches(kind)]
# Presets whose build alone takes tens of seconds on a 2-core CPU, and the test that already
# builds, forwards and folds them.
BUILT_ELSEWHERE = {
    "fv2es_paper": "the seed's network (NesT-B, ~100 M parameters): tests/models/test_seed.py builds it "
                   "in both forms, forwards and folds it (test_folded_import_equals_training_form_import)",
    **{name: "a seed baseline on hand-crafted feature sequences (HCFInputs, not ModelInputs): "
             "tests/models/test_baselines.py builds it, forwards it and checks it against the seed's names"
       for name in ("lf_rnn", "lf_transformer")},
}


@pytest.fixture(scope="module")
def albert(tmp_path_factory):
    """(folder holding a 2-layer ALBERT config + a tiny tokenizer, its config dict)."""
    folder = tmp_path_factory.mktemp("albert-registry")
    return str(folder), make_small_albert(folder)


def test_the_registry_lists_presets_and_architectures():
    assert {"fv2es_paper", "fv2es_tiny"} <= set(list_models())
    # at least the paper's architectures (other modules may register more)
    assert {"nest"} <= set(list_branches("audio")) and {"repvgg"} <= set(list_branches("visual"))
    assert {"hf"} <= set(list_branches("text"))
    paper = get_preset("fv2es_paper")
    assert (paper.text_arch, paper.audio_arch, paper.visual_arch) == ("hf", "nest", "repvgg")
    # the seed's network: 3x3 NesT patch embedding, timm's default drop path 0.5
    assert (paper.audio_patch_kernel, paper.audio_drop_path) == (3, 0.5)
    with pytest.raises(ConfigError, match="unknown audio architecture 'nope'; known: .*nest"):
        get_branch("audio", "nope")


def _branch_call(kind: str, config, albert_config: dict, rng: torch.Generator):
    """(builder keyword arguments, forward inputs, leading size) for a branch of ``kind``.

    The inputs are the model's geometry as :class:`ModelConfig` exposes it (faces (N, 3, S, S),
    pieces (P, *piece_shape), token ids + mask (B, T)), with sizes no batch mate shares.
    """
    if kind == "visual":
        s = config.face_size
        return {"out_dim": 24}, (torch.randn(5, 3, s, s, generator=rng),), 5
    if kind == "audio":
        return {"out_dim": 24}, (torch.randn(3, *config.piece_shape, generator=rng),), 3
    ids = torch.randint(0, albert_config["vocab_size"], (2, 7), generator=rng)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0  # a padded second utterance
    return {"pretrained": False, "hf_config": albert_config}, (ids, mask), 2


@pytest.mark.parametrize(("kind", "name"), BRANCHES, ids=[f"{k}-{n}" for k, n in BRANCHES])
def test_every_branch_builds_forwards_on_the_geometry_and_folds(kind, name, albert):
    config = dataclasses.replace(get_preset("fv2es_tiny"), **{f"{kind}_arch": name})
    rng = torch.Generator().manual_seed(0)
    kwargs, inputs, lead = _branch_call(kind, config, albert[1], rng)
    torch.manual_seed(0)
    branch = get_branch(kind, name)(config, **kwargs)
    assert isinstance(branch, nn.Module)
    out_dim = kwargs.get("out_dim", getattr(branch, "out_dim", None))
    assert isinstance(out_dim, int) and out_dim > 0  # a text branch declares its width
    with torch.no_grad():
        branch.train()
        for _ in range(2):  # move batch-norm statistics off their init, so folding has work to do
            branch(*inputs)
        branch.eval()
        out = branch(*inputs)
    assert out.shape == (lead, out_dim) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    if not hasattr(branch, "reparameterize"):
        return
    assert branch.reparameterized is False
    with torch.no_grad():
        branch.reparameterize()
        folded = branch(*inputs)
    assert branch.reparameterized is True
    torch.testing.assert_close(folded, out, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", list_models())
def test_every_preset_is_a_checked_config(name):
    cfg = config_from_dict({"model": {"preset": name}}).model
    assert cfg == get_preset(name) and cfg.preset == name
    assert registry._PRESETS[name].__doc__  # a preset says what it is
    for kind in BRANCH_KINDS:
        if kind[0] in cfg.modalities:
            assert getattr(cfg, f"{kind}_arch") in list_branches(kind)


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=pytest.mark.skip(reason=BUILT_ELSEWHERE[n])) if n in BUILT_ELSEWHERE else n
    for n in list_models()
])
def test_every_preset_builds_and_runs_a_small_batch(name, albert):
    folder, text_config = albert
    cfg = config_from_dict({"model": {"preset": name, "text_model": folder}}).model
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
    assert model.reparameterized
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
