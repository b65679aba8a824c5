"""The seed authors' checkpoints: the paper preset is the seed's network, and import-seed maps
every tensor strictly (issue 11). Seed-format state dicts come from the seed's key lists."""

import collections
import copy
import json

import numpy as np
import pytest
import torch

from fv2es.errors import CheckpointError
from fv2es.models import Collate, create_model, get_preset, load_checkpoint
from fv2es.models.seed import (
    import_seed_state_dict,
    map_seed_state_dict,
    read_seed_state_dict,
    seed_to_fv2es_name,
    text_encoder_config,
    to_seed_state_dict,
)

from .conftest import make_sample
from .seed_format import (
    DEPLOY_KEYS,
    TRAINING_KEYS,
    dropped,
    fold_seed_state,
    make_small_albert,
    read_key_list,
    seed_training_state,
)


@pytest.fixture(scope="module")
def albert(tmp_path_factory):
    """(folder holding a 2-layer ALBERT config + a tiny tokenizer, its config dict)."""
    folder = tmp_path_factory.mktemp("albert-small")
    return str(folder), make_small_albert(folder)


@pytest.fixture(scope="module")
def seed_state(albert):
    return seed_training_state(albert[1])


@pytest.fixture(scope="module")
def imported(seed_state, albert):
    """The training-form seed state imported (eval mode, training form kept)."""
    return import_seed_state_dict(seed_state, text_model=albert[0])


@pytest.fixture(scope="module")
def batch(albert):
    rng = np.random.default_rng(0)
    collate = Collate(albert[0], 16)
    return collate([make_sample(rng, 3, 2, text="i am so happy today"),
                    make_sample(rng, 2, 1, text="what a lovely day")])


def _as_numel(keys):
    return sum(int(np.prod(shape)) for shape in keys.values())


def test_paper_preset_has_exactly_the_seeds_keys_and_shapes_in_both_forms():
    # Full-size ALBERT base (its config is known offline); the architecture only, no weights.
    model = create_model(get_preset("fv2es_paper"), pretrained_text=False,
                         text_config=text_encoder_config("albert-base-v2"))
    for path, fold in ((TRAINING_KEYS, False), (DEPLOY_KEYS, True)):
        if fold:
            model.reparameterize()
        expected = {k: v for k, v in read_key_list(path).items() if not dropped(k)}
        ours = {seed_to_fv2es_name(k): k for k in expected}
        got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert set(got) == set(ours), (set(got) ^ set(ours))
        assert {ours_name: got[ours_name] for ours_name in ours} == {n: expected[k] for n, k in ours.items()}
        # ... and so the parameter count is the seed's state dict's, less MTCNN and NesT's unused head
        assert sum(v.numel() for v in model.state_dict().values()) == _as_numel(expected)
    trainable = sum(p.numel() for p in model.parameters())
    assert trainable == _as_numel({k: v for k, v in read_key_list(DEPLOY_KEYS).items()
                                   if not dropped(k) and not k.startswith("V.1.running")
                                   and not k.endswith("num_batches_tracked")})


def test_every_tensor_lands_where_its_name_says(seed_state, imported):
    back = to_seed_state_dict(imported.state_dict())
    kept = {k: v for k, v in seed_state.items() if not dropped(k)}
    assert set(back) == set(kept)
    for name, tensor in kept.items():
        assert torch.equal(back[name], tensor), name
    # a few homes checked by hand, not through the mapping table
    assert torch.equal(imported.visual.stem[0].bias, seed_state["V.0.bias"])
    assert torch.equal(imported.visual.blocks[4].conv_kxk.conv.weight, seed_state["V.8.rbr_dense.conv.weight"])
    assert torch.equal(imported.visual.blocks[1].identity.running_var, seed_state["V.5.rbr_identity.running_var"])
    assert imported.audio.nest.patch_embed.proj.weight.shape == (128, 4, 3, 3)
    assert torch.equal(imported.audio.nest.patch_embed.proj.bias, seed_state["A.0.patch_embed.proj.bias"])
    assert torch.equal(imported.audio.proj[1].weight, seed_state["a_flatten.0.weight"])
    assert torch.equal(imported.visual_temporal.cls_emb.weight, seed_state["v_transformer.cls_emb.weight"])
    assert torch.equal(imported.heads["t"].weight, seed_state["t_out.weight"])
    assert torch.equal(imported.text.encoder.embeddings.word_embeddings.weight,
                       seed_state["T.albert.embeddings.word_embeddings.weight"])


def test_folded_import_equals_training_form_import(seed_state, imported, albert, batch):
    folded_state = fold_seed_state(seed_state)
    deploy_v = {k: v for k, v in read_key_list(DEPLOY_KEYS).items() if k.startswith("V.")}
    assert {k: tuple(v.shape) for k, v in folded_state.items() if k.startswith("V.")} == deploy_v
    folded = import_seed_state_dict(folded_state, text_model=albert[0])
    assert folded.reparameterized and not imported.reparameterized
    with torch.no_grad():
        expected = imported(batch)
        # our own fold (timm's) of the training-form import agrees as well
        refolded = copy.deepcopy(imported).reparameterize()
        torch.testing.assert_close(refolded(batch), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(folded(batch), expected, atol=1e-5, rtol=1e-5)


def test_fusion_is_the_seeds_weighted_sum_over_text_visual_audio(seed_state, imported, batch):
    w_t, w_v, w_a = seed_state["weighted_fusion.weight"][0].tolist()
    with torch.no_grad():
        text = imported.heads["t"](imported.text(batch.text_ids, batch.text_mask))
        visual = imported.heads["v"](imported.visual_temporal(imported.visual(batch.faces), batch.face_lens))
        audio = imported.heads["a"](imported.audio_temporal(imported.audio(batch.pieces), batch.piece_lens))
        fused = imported(batch)
    assert imported.modalities == "tva"
    torch.testing.assert_close(fused, w_t * text + w_v * visual + w_a * audio, atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def target(imported):
    return imported.state_dict()


def test_a_missing_key_is_named(seed_state, target):
    broken = dict(seed_state)
    del broken["a_out.bias"]
    with pytest.raises(CheckpointError, match=r"1 key\(s\) missing: a_out.bias \(fv2es heads.a.bias\)"):
        map_seed_state_dict(broken, target)


def test_an_extra_key_is_named(seed_state, target):
    broken = {**seed_state, "V.12.rbr_dense.conv.weight": torch.zeros(3), "mystery": torch.zeros(1)}
    with pytest.raises(CheckpointError) as err:
        map_seed_state_dict(broken, target)
    assert "2 key(s) with no place in the model: V.12.rbr_dense.conv.weight, mystery" in str(err.value)


def test_a_wrong_shape_is_named_with_both_shapes(seed_state, target):
    broken = {**seed_state, "v_out.weight": torch.zeros(6, 65)}
    with pytest.raises(CheckpointError, match=r"v_out.weight \(6, 65\) -> heads.v.weight expects \(6, 64\)"):
        map_seed_state_dict(broken, target)


def test_every_problem_is_reported_at_once(seed_state, target):
    broken = {**seed_state, "extra.weight": torch.zeros(1), "t_out.bias": torch.zeros(7)}
    del broken["A.0.norm.weight"]
    with pytest.raises(CheckpointError) as err:
        map_seed_state_dict(broken, target)
    message = str(err.value)
    assert "extra.weight" in message and "A.0.norm.weight" in message and "t_out.bias (7,)" in message


class NotWeights:
    """Anything a weights-only unpickler must refuse."""

    def __init__(self):
        self.value = 3


def test_a_pickle_that_needs_code_is_refused(tmp_path):
    path = tmp_path / "code.pt"
    torch.save({"model": NotWeights()}, path)
    with pytest.raises(CheckpointError, match="refused: it needs more than tensors to unpickle"):
        read_seed_state_dict(path.read_bytes(), "code.pt")
    with pytest.raises(CheckpointError, match="Unsupported global: GLOBAL tests.models.test_seed.NotWeights"):
        read_seed_state_dict(path.read_bytes(), "code.pt")
    for junk in (b"\x80\x04garbage", b"hello world", path.read_bytes()[:100], b""):
        with pytest.raises(CheckpointError, match="junk.pt: not a readable torch checkpoint"):
            read_seed_state_dict(junk, "junk.pt")
    plain = tmp_path / "plain.pt"
    torch.save(collections.OrderedDict(w=torch.zeros(2)), plain)  # the seed's format reads fine
    assert set(read_seed_state_dict(plain.read_bytes())) == {"w"}


def test_emotion_count_must_match_the_heads(seed_state, albert):
    with pytest.raises(CheckpointError, match="heads have 6 outputs but 2 emotions"):
        import_seed_state_dict(seed_state, text_model=albert[0], emotions=("a", "b"))


def test_cli_writes_an_ordinary_checkpoint_that_rebuilds_offline(seed_state, imported, albert, batch, tmp_path,
                                                                 capsys):
    from fv2es.cli import main

    seed_file = tmp_path / "mme2e_tav_Acc_0.8477_seed0.pt"
    torch.save(seed_state, seed_file)
    out = tmp_path / "seed.safetensors"
    assert main(["import-seed", str(seed_file), "--output", str(out), "--text-model", albert[0],
                 "--thresholds", "0.3", "0.4", "0.5", "0.5", "0.5", "0.6"]) == 0
    printed = capsys.readouterr().out
    assert "modalities tva" in printed and "training form" in printed and "note:" not in printed
    ckpt = load_checkpoint(str(out), inference=False)
    assert ckpt.thresholds == [0.3, 0.4, 0.5, 0.5, 0.5, 0.6] and ckpt.activation == "sigmoid"
    assert ckpt.extra["source"] == "seed" and ckpt.config.text_model == albert[0]
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model.eval()(batch), imported(batch))
    # The text encoder's architecture comes from the file: no config lookup when building.
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        assert json.loads(f.metadata()["text_config"])["hidden_size"] == 32

    bad = tmp_path / "code.pt"
    torch.save({"x": NotWeights()}, bad)
    assert main(["import-seed", str(bad), "--output", str(tmp_path / "x.safetensors"),
                 "--text-model", albert[0]]) == 2
    assert "refused" in capsys.readouterr().err
