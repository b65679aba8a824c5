"""`fv2es model` with the seed's baselines (issue 24): parameter counts per part of the built
network and a timed forward pass on a generated utterance of the hand-crafted feature sizes."""

import re

import pytest

from fv2es.cli import main
from fv2es.config import config_from_dict
from fv2es.models import create_model


def printed(out: str) -> dict[str, int]:
    """The ``  name   1,234`` lines of the command's output."""
    return {m[1]: int(m[2].replace(",", "")) for m in re.finditer(r"^  (\S+) +([\d,]+)$", out, re.M)}


def lstm_parameters(size: int) -> int:
    """One bidirectional nn.LSTM layer of width = input width: 4 gates, two bias vectors, two directions."""
    return 2 * (4 * size * (size + size) + 2 * 4 * size)


@pytest.mark.parametrize(("preset", "encoders"), [("lf_rnn", "rnns"), ("lf_transformer", "transformers")])
@pytest.mark.parametrize("modalities", ["tav", "a"])
def test_model_command_counts_and_times_a_baseline(preset, encoders, modalities, capsys):
    assert main(["model", "--seconds", "2", "--repeats", "2", f"model.preset={preset}",
                 f"model.modalities={modalities}"]) == 0
    out = capsys.readouterr().out
    counts = printed(out)
    model = create_model(config_from_dict({"model": {"preset": preset, "modalities": modalities}}).model)
    parts = {f"{kind}.{m}": sum(p.numel() for p in getattr(model, kind)[m].parameters())
             for kind in (encoders, "affines") for m in "tav"}
    fusion = len(modalities)  # Linear(M, 1, bias=False), built even for one modality (then unused)
    assert counts == {**parts, "weighted_fusion": fusion, "total": sum(p.numel() for p in model.parameters()),
                      "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    assert sum(parts.values()) + fusion == counts["total"]
    # the seed's network: every modality's encoder and head exist; those not used are frozen
    used = sum(n for name, n in parts.items() if name[-1] in modalities) + (3 if len(modalities) > 1 else 0)
    assert counts["trainable"] == used
    if preset == "lf_rnn":  # one Bi-LSTM of the feature width per modality; heads Linear(2d, d) - Linear(d, 6)
        assert [counts[f"rnns.{m}"] for m in "tav"] == [lstm_parameters(s) for s in (384, 88, 140)]
        assert counts["affines.a"] == 176 * 88 + 88 + 88 * 6 + 6
        assert counts["total"] == 3_160_494 + fusion
    else:
        assert counts["total"] == 6_525_380 + fusion
    assert f"model {preset} (the seed's {preset} baseline; modalities {modalities})" in out
    assert "inputs: hand-crafted feature sequences, widths 384 88 140" in out
    # 2 s: MiniLM's word pieces of the sample sentence (no [CLS]/[SEP]), 1 + 32000 // 200 audio frames,
    # a face frame every 500 ms
    assert "2 s -> 16 word pieces, 161 audio frames, 4 face frames (inference form, cpu" in out
    median = float(re.search(r"forward: median ([\d.]+) ms over 2 runs", out)[1])
    assert median > 0
    probs = [float(p.split("=")[1]) for p in out.split("probabilities: ")[1].split(", ")]
    assert len(probs) == 6 and all(0.0 < p < 1.0 for p in probs)


def test_the_generated_features_have_the_lengths_preprocessing_gives():
    from fv2es.commands.model_info import example_features
    from fv2es.media.spectrogram import num_frames
    from fv2es.models.handcrafted import HandCraftedFeatures

    cfg = config_from_dict({"model": {"preset": "lf_rnn"}}).model
    text = "I can't believe you did that, I am so happy for you."
    sample = example_features(3.3, cfg, 500, text)
    real_text = HandCraftedFeatures().text([text])[0]  # what `fv2es preprocess --hand-crafted` writes
    assert sample["hcf_text"].shape == real_text.shape == (16, 384)
    assert sample["hcf_audio"].shape == (num_frames(round(3.3 * 16000)), 88) == (265, 88)
    assert sample["hcf_visual"].shape == (6, 140)
    assert all(a.dtype == "float32" for a in sample.values())
    # too long a transcript is cut to the model's text_max_len, as preprocessing cuts it
    long = example_features(1.0, cfg, 500, " ".join(["word"] * 150))
    assert long["hcf_text"].shape == (100, 384)
