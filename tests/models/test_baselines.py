"""The seed's baselines (issue 24): built from the seed's argument values they carry the seed's
parameter names and shapes (fixtures written from the seed's ``LF_RNN`` / ``LF_Transformer``), and
they compute what the seed's forward computes: its text quirks, its order and its fusion."""

from pathlib import Path

import numpy as np
import pytest
import torch

from fv2es.config import config_from_dict
from fv2es.errors import ConfigError
from fv2es.models import create_model, load_checkpoint, save_checkpoint
from fv2es.models.baselines import HCFCollate, LateFusionRNN, LateFusionTransformer

FIXTURES = Path(__file__).parent / "fixtures"
SIZES = (300, 144, 35)  # the seed's -hfcs default
BASELINES = ("lf_rnn", "lf_transformer")


def seed_model(name: str, modalities: str = "tav", **model):
    """The network the seed's ``main.py --model NAME -mod MODS --num-emotions 6`` builds (its
    ``-hfcs`` default, 300 144 35, unless ``model`` says otherwise)."""
    model = {"hfc_sizes": list(SIZES), **model}
    cfg = config_from_dict({"model": {"preset": name, "modalities": modalities,
                                      "emotions": ["ang", "exc", "fru", "hap", "neu", "sad"], **model}}).model
    torch.manual_seed(0)
    return create_model(cfg)


def read_keys(name: str) -> list[tuple[str, tuple[int, ...]]]:
    lines = (FIXTURES / f"{name}_tav_state_dict_keys.tsv").read_text().splitlines()[1:]
    return [(k, tuple(int(d) for d in s.strip("()").split(",") if d.strip())) for k, s in
            (line.split("\t") for line in lines)]


def sample(rng, t: int, a: int, v: int, sizes=SIZES) -> dict:
    return {"hcf_text": rng.normal(size=(t, sizes[0])).astype("f4") if t else None,
            "hcf_audio": rng.normal(size=(a, sizes[1])).astype("f4") if a else None,
            "hcf_visual": rng.normal(size=(v, sizes[2])).astype("f4") if v else None}


@pytest.mark.parametrize("name", BASELINES)
@pytest.mark.parametrize("modalities", ["tav", "t", "av"])
def test_state_dict_has_the_seeds_keys_and_shapes(name, modalities):
    # The seed builds every modality's encoder and head whatever -mod says; only the fusion's
    # width follows -mod.
    expected = read_keys(name)
    model = seed_model(name, modalities)
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    expected = {k: (1, len(modalities)) if k == "weighted_fusion.weight" else s for k, s in expected}
    assert len(got) == len(expected) and dict(got) == expected  # names and shapes (the order is free)
    # modules of modalities not in use are frozen, so DDP and the optimiser leave them alone
    trainable = {k.split(".")[1] for k, p in model.named_parameters() if p.requires_grad and "." in k
                 and k.split(".")[0] in ("rnns", "transformers", "affines")}
    assert trainable == set(modalities)
    assert model.weighted_fusion.weight.requires_grad == (len(modalities) > 1)


def test_the_presets_are_the_seeds_networks():
    rnn, trans = seed_model("lf_rnn"), seed_model("lf_transformer")
    assert isinstance(rnn, LateFusionRNN) and isinstance(trans, LateFusionTransformer)
    for m, size in zip("tav", SIZES):
        lstm = rnn.rnns[m]
        assert isinstance(lstm, torch.nn.LSTM)
        assert (lstm.input_size, lstm.hidden_size, lstm.num_layers, lstm.bidirectional) == (size, size, 1, True)
    layers = {m: trans.transformers[m].encoder.layers for m in "tav"}
    assert {m: len(v) for m, v in layers.items()} == {"t": 2, "a": 2, "v": 2}  # --trans-nlayers default 2
    assert [layers[m][0].self_attn.num_heads for m in "tav"] == [4, 2, 5]
    assert layers["t"][0].linear1.out_features == 2048 and layers["t"][0].dropout.p == 0.1  # torch defaults
    assert rnn.modalities == trans.modalities == "tav"  # logits stacked t, a, v (FV2ES: t, v, a)


@pytest.mark.parametrize("name", BASELINES)
def test_forward_fuses_per_modality_logits_in_the_seeds_order(name):
    model = seed_model(name).eval()
    rng = np.random.default_rng(0)
    x = HCFCollate(SIZES)([sample(rng, 5, 30, 8), sample(rng, 9, 12, 3), sample(rng, 2, 20, 6)])
    with torch.no_grad():
        logits, present = model.modality_logits(x)
        fused = model(x)
    assert logits.shape == (3, 6, 3) and present.all()
    w = model.weighted_fusion.weight[0]
    torch.testing.assert_close(fused, (logits * w).sum(-1))
    # one modality: its head's logits, as they are (the seed skips the fusion)
    for i, m in enumerate("tav"):
        alone = seed_model(name, m).eval()
        alone.load_state_dict({k: v for k, v in model.state_dict().items() if k != "weighted_fusion.weight"},
                              strict=False)
        with torch.no_grad():
            torch.testing.assert_close(alone(x), logits[..., i])


def test_lf_rnn_text_reads_the_padded_batchs_last_step_audio_the_final_states():
    # The seed runs its LSTMs over the padded batch without packing: text takes the output at the
    # last padded step, so a short transcript's feature depends on its longest batch mate; audio
    # and visual take h_n (forward, backward), where the forward state also ran over padding.
    model = seed_model("lf_rnn", "t").eval()
    rng = np.random.default_rng(1)
    short, long_ = sample(rng, 3, 4, 4), sample(rng, 9, 4, 4)
    collate = HCFCollate(SIZES)
    with torch.no_grad():
        alone = model(collate([short]))
        with_mate = model(collate([short, long_]))[:1]
        padded = torch.cat([torch.from_numpy(short["hcf_text"]), torch.zeros(6, 300)])[:, None]
        out, _ = model.rnns["t"](padded)
        expected = model.affines["t"](out[-1])
    assert not torch.allclose(alone, with_mate)
    torch.testing.assert_close(with_mate, expected)
    audio = seed_model("lf_rnn", "a").eval()
    with torch.no_grad():
        _, (h_n, _) = audio.rnns["a"](torch.from_numpy(short["hcf_audio"])[:, None])
        torch.testing.assert_close(audio(collate([short])), audio.affines["a"](torch.cat([h_n[0], h_n[1]], -1)))


def test_lf_transformer_masks_audio_padding_not_text():
    model = seed_model("lf_transformer").eval()
    rng = np.random.default_rng(2)
    short, long_ = sample(rng, 3, 10, 4), sample(rng, 9, 30, 12)
    collate = HCFCollate(SIZES)
    with torch.no_grad():
        alone, _ = model.modality_logits(collate([short]))
        paired, _ = model.modality_logits(collate([short, long_]))
    torch.testing.assert_close(paired[:1, :, 1:], alone[:, :, 1:], atol=1e-5, rtol=1e-5)  # a, v masked
    assert not torch.allclose(paired[:1, :, 0], alone[:, :, 0], atol=1e-4)  # text attends over padding


@pytest.mark.parametrize("name", BASELINES)
def test_an_absent_modality_is_left_out_of_its_samples_fusion(name):
    model = seed_model(name).eval()
    rng = np.random.default_rng(3)
    x = HCFCollate(SIZES)([sample(rng, 0, 10, 5), sample(rng, 4, 0, 0)])
    with torch.no_grad():
        logits, present = model.modality_logits(x)
        fused = model(x)
        none = model(HCFCollate(SIZES)([sample(rng, 0, 0, 3)]))  # text and audio absent batch-wide
    assert present.tolist() == [[False, True, True], [True, False, False]]
    w = model.weighted_fusion.weight[0]
    torch.testing.assert_close(fused, (logits * present[:, None] * w).sum(-1))
    assert none.shape == (1, 6) and torch.isfinite(none).all()


def test_collate_checks_widths_against_hfc_sizes():
    with pytest.raises(ValueError, match=r"hcf_audio: expected \(L, 144\) features"):
        HCFCollate(SIZES)([{"hcf_audio": np.zeros((3, 74), "f4")}])


@pytest.mark.parametrize("name", BASELINES)
def test_a_baseline_trains_and_its_checkpoint_rebuilds_it(name, tmp_path):
    model = seed_model(name, hfc_sizes=[16, 8, 10], hfc_heads=[4, 2, 5], num_layers=1)
    rng = np.random.default_rng(4)
    x = HCFCollate((16, 8, 10))([sample(rng, 4, 6, 5, (16, 8, 10)), sample(rng, 2, 9, 3, (16, 8, 10))])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(x).sum().backward()
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(not k.startswith(("rnns.", "transformers.", "affines.")) or k.split(".")[1] in "tav"
                           for k in changed)
    path = str(tmp_path / "m.safetensors")
    save_checkpoint(path, model, thresholds=[0.5] * 6)
    loaded = load_checkpoint(path)
    assert loaded.config == model.config and loaded.config.arch == name
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x))


def test_baseline_config_is_checked():
    with pytest.raises(ConfigError, match="a width 144 is not divisible by its lf_transformer heads"):
        config_from_dict({"model": {"preset": "lf_transformer", "hfc_sizes": [300, 144, 35], "hfc_heads": [4, 5, 5]}})
    with pytest.raises(ConfigError, match="give 3 positive values"):
        config_from_dict({"model": {"preset": "lf_rnn", "hfc_sizes": [300, 144]}})
    gru = seed_model("lf_rnn", "a", gru=True, num_layers=2, hidden_size=20, bidirectional=False)
    assert isinstance(gru.rnns["a"], torch.nn.GRU) and gru.affines["a"][0].in_features == 20
    x = HCFCollate(SIZES)([sample(np.random.default_rng(5), 2, 7, 3)])
    assert gru.eval()(x).shape == (1, 6)
