"""Hand-crafted feature sequences from shard columns (fv2es.models.handcrafted): each dimension is
what the module says it is, on media whose answer is known."""

import numpy as np
import pytest
import torch

from fv2es.config import config_from_dict
from fv2es.errors import ConfigError
from fv2es.media.spectrogram import SpectrogramConfig, SpectrogramPieces
from fv2es.models.baselines import HCFInputs
from fv2es.models.handcrafted import (
    HFC_SIZES,
    HandCraftedCollate,
    HandCraftedFeatures,
    audio_descriptors,
    pieces_to_frames,
)

SR = 16000


def tone(hz: float, seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture(scope="module")
def features():
    return HandCraftedFeatures("minilm", 100)


def test_presets_read_these_widths():
    for name in ("lf_rnn", "lf_transformer"):
        cfg = config_from_dict({"model": {"preset": name}}).model
        assert cfg.hfc_sizes == HFC_SIZES and cfg.hand_crafted
        for size, heads in zip(cfg.hfc_sizes, cfg.hfc_heads):
            assert size % heads == 0  # the seed's 4 / 2 / 5 heads divide them


@pytest.mark.parametrize("log", [False, True])
def test_pieces_go_back_to_frames_and_mfccs_are_torchaudios(log):
    import torchaudio

    wave = tone(220, 1.3) + 0.01 * np.random.default_rng(0).normal(size=int(1.3 * SR)).astype(np.float32)
    pieces = SpectrogramPieces(SpectrogramConfig(log=log)).many([wave])[0]
    mel = pieces_to_frames(pieces)
    frames = int(1.3 * SR) // 200 + 1  # centred STFT
    assert mel.shape == (frames, 128) and pieces.shape[0] * 32 > frames  # the padding is gone
    reference = torchaudio.transforms.MFCC(SR, n_mfcc=40, melkwargs=dict(n_fft=400, hop_length=200, n_mels=128))
    expected = reference(torch.from_numpy(wave)).T / 100
    got = audio_descriptors(mel)
    assert got.shape == (frames, 88)
    torch.testing.assert_close(got[:, :40], expected, atol=1e-3 if log else 1e-5, rtol=1e-4)


def test_energy_pitch_proxy_and_deltas_follow_the_sound():
    def describe(wave):
        return audio_descriptors(pieces_to_frames(SpectrogramPieces(SpectrogramConfig()).many([wave])[0]))

    low, high, quiet = describe(tone(200, 1.0)), describe(tone(800, 1.0)), describe(tone(200, 1.0, amp=0.03))
    mid = slice(5, -5)  # away from the edges' padding
    assert (high[mid, 43] > low[mid, 43]).all() and (high[mid, 41] > low[mid, 41]).all()  # peak bin, centroid
    torch.testing.assert_close(low[mid, 40] - quiet[mid, 40], torch.full_like(low[mid, 40], 0.2), atol=1e-3,
                               rtol=0)  # 20 dB louder, in units of 100 dB
    assert low[mid, 42].max() < 0.2  # a pure tone is far from flat
    assert low[mid, 44:].abs().max() < 1e-3  # a steady tone: deltas near zero


def test_text_and_visual_vectors(features):
    rng = np.random.default_rng(1)
    faces = rng.integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    faces[1] = 0  # a black frame
    out = features([{"text": "I am so happy today", "faces": faces, "pieces": None}, {"text": "", "faces": None}])
    first, empty = out
    assert first["hcf_text"].shape == (5, 384)  # five word pieces, no [CLS] / [SEP]
    assert empty["hcf_text"].shape == (0, 384) and empty["hcf_audio"].shape == (0, 88)
    assert empty["hcf_visual"].shape == (0, 140) and first["hcf_audio"].shape == (0, 88)
    visual = first["hcf_visual"]
    assert visual.shape == (3, 140) and visual.dtype == np.float32
    np.testing.assert_allclose(visual[:, 135:138], faces.reshape(3, -1, 3).mean(1) / 255, rtol=1e-5)
    assert visual[1, 138] == 0 and visual[1, 139] == 0 and visual[0, 139] > 0.1  # black: no contrast, no edges
    # the same transcript in a batch with another: the same vectors (padding is masked)
    again = features([{"text": "a much longer sentence than the other one by far"},
                      {"text": "I am so happy today"}])[1]["hcf_text"]
    np.testing.assert_allclose(again, first["hcf_text"], atol=1e-4)


def test_collate_builds_baseline_inputs_and_checks_widths():
    cfg = config_from_dict({"model": {"preset": "lf_rnn"}}).model
    rng = np.random.default_rng(2)
    pieces = SpectrogramPieces(SpectrogramConfig()).many([tone(300, 0.6)])[0]
    x = HandCraftedCollate(cfg)([{"text": "hello there", "faces": rng.integers(0, 256, (2, 48, 48, 3), np.uint8),
                                  "pieces": pieces}, {"text": "", "faces": None, "pieces": None}])
    assert isinstance(x, HCFInputs)
    assert x.text_lens.tolist() == [2, 0] and x.visual_lens.tolist() == [2, 0] and x.audio_lens[1] == 0
    seed_sizes = config_from_dict({"model": {"preset": "lf_rnn", "hfc_sizes": [300, 144, 35]}}).model
    with pytest.raises(ConfigError, match="give -hfcs 384 88 140"):
        HandCraftedCollate(seed_sizes)


def test_a_baseline_checkpoint_predicts_rows_as_scoring_does(tmp_path):
    # Scoring, evaluation and validation share Predictor: a baseline's checkpoint picks its own collate.
    from fv2es.models import create_model, save_checkpoint
    from fv2es.pipeline.packing import pack
    from fv2es.predict import Predictor, fusion_weights, read_model_info

    cfg = config_from_dict({"model": {"preset": "lf_transformer"}}).model
    torch.manual_seed(0)
    path = str(tmp_path / "lf.safetensors")
    save_checkpoint(path, create_model(cfg), thresholds=[0.5] * 6)
    predictor = Predictor.from_checkpoint(path)
    assert isinstance(predictor.collate, HandCraftedCollate) and predictor.modality_names == ["text", "voice", "face"]
    rng = np.random.default_rng(3)
    pieces = SpectrogramPieces(SpectrogramConfig()).many([tone(250, 0.8)])[0]
    rows = [{"text": "so happy", "faces": pack(rng.integers(0, 256, (2, 48, 48, 3), np.uint8)), "pieces": pack(pieces)},
            {"text": "", "faces": pack(np.zeros((0, 48, 48, 3), np.uint8)), "pieces": pack(pieces)}]
    fused, alone = predictor.predict_rows_by_modality(rows)
    assert fused.shape == (2, 6) and np.isfinite(fused).all()
    assert np.isnan(alone["text"][1]).all() and np.isnan(alone["face"][1]).all() and np.isfinite(alone["voice"]).all()
    np.testing.assert_allclose(predictor.predict_rows(rows), fused, atol=1e-6)
    weights = fusion_weights(path, read_model_info(path))["weights"]
    assert list(weights) == ["text", "voice", "face"]


def test_features_are_computed_once_per_input(features, monkeypatch):
    from fv2es.models import handcrafted

    calls = []
    real = HandCraftedFeatures.visual
    monkeypatch.setattr(HandCraftedFeatures, "visual", lambda self, faces: calls.append(1) or real(self, faces))
    faces = np.random.default_rng(7).integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    first = features([{"text": "", "faces": faces}])[0]["hcf_visual"]
    second = features([{"text": "", "faces": faces.copy()}])[0]["hcf_visual"]  # equal content, another array
    assert len(calls) == 1 and second is first and ("v", handcrafted._key("v", faces)[1]) in handcrafted._CACHE
