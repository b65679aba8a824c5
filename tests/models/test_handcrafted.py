"""Hand-crafted feature sequences (fv2es.models.handcrafted) and the stages that write them into
shards (fv2es.pipeline.stages.handcrafted): each dimension is what the module says it is, on media
whose answer is known."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from fv2es.config import config_from_dict
from fv2es.errors import ConfigError, InputError
from fv2es.models.baselines import HCFInputs
from fv2es.models.handcrafted import (
    HFC_SIZES,
    HandCraftedFeatures,
    ShardFeatureCollate,
    audio_descriptors,
    check_shards,
    unpack_features,
)
from fv2es.pipeline.packing import pack

SR = 16000


def tone(hz: float, seconds: float, amp: float = 0.3, harmonics: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return sum((amp / k) * np.sin(2 * np.pi * hz * k * t) for k in range(1, harmonics + 1)).astype(np.float32)


@pytest.fixture(scope="module")
def features():
    return HandCraftedFeatures("minilm", 100)


def test_presets_read_these_widths():
    for name in ("lf_rnn", "lf_transformer"):
        cfg = config_from_dict({"model": {"preset": name}}).model
        assert cfg.hfc_sizes == HFC_SIZES and cfg.hand_crafted
        for size, heads in zip(cfg.hfc_sizes, cfg.hfc_heads):
            assert size % heads == 0  # the seed's 4 / 2 / 5 heads divide them


def test_mfccs_are_torchaudios_and_frames_are_the_spectrograms():
    import torchaudio

    from fv2es.media.spectrogram import num_frames

    wave = tone(220, 1.3) + 0.01 * np.random.default_rng(0).normal(size=int(1.3 * SR)).astype(np.float32)
    got = audio_descriptors(wave)
    assert got.shape == (num_frames(len(wave)), 88) and got.dtype == np.float32
    reference = torchaudio.transforms.MFCC(SR, n_mfcc=40, melkwargs=dict(n_fft=400, hop_length=200, n_mels=128))
    expected = reference(torch.from_numpy(wave)).T / 100
    torch.testing.assert_close(torch.from_numpy(got[:, :40]), expected, atol=1e-5, rtol=1e-4)
    assert audio_descriptors(np.zeros(0, np.float32)).shape == (0, 88)
    assert audio_descriptors(np.zeros(100, np.float32)).shape == (3, 88)  # padded to n_fft, as the pieces


@pytest.mark.parametrize(("hz", "harmonics"), [(65, 1), (120, 1), (200, 1), (350, 1), (480, 1), (150, 7)])
def test_f0_and_voicing_follow_the_pitch(hz, harmonics):
    d = audio_descriptors(tone(hz, 1.0, harmonics=harmonics))[5:-5]  # away from the edges
    np.testing.assert_allclose(d[:, 42] * 500, hz, rtol=0.005)  # F0 in Hz / 500, within 0.5%
    assert d[:, 43].min() > 0.99  # a steady periodic sound: NCCF ~1
    assert np.abs(d[:, 86]).max() < 1e-3  # ... and its F0 does not move (delta of 42)


def test_noise_and_silence_are_unvoiced():
    noise = audio_descriptors(np.random.default_rng(0).normal(size=SR).astype(np.float32) * 0.1)
    silence = audio_descriptors(np.zeros(SR, np.float32))
    assert (noise[:, 42] == 0).all() and noise[:, 43].mean() < 0.3
    assert (silence[:, 42] == 0).all() and (silence[:, 43] == 0).all()


def test_energy_centroid_and_deltas_follow_the_sound():
    low, high, quiet = audio_descriptors(tone(200, 1.0)), audio_descriptors(tone(800, 1.0)), audio_descriptors(
        tone(200, 1.0, amp=0.03))
    mid = slice(5, -5)
    assert (high[mid, 41] > low[mid, 41]).all()  # centroid
    np.testing.assert_allclose(low[mid, 40] - quiet[mid, 40], 0.2, atol=1e-3)  # 20 dB, in units of 100 dB
    assert np.abs(low[mid, 44:86]).max() < 1e-3  # a steady tone: deltas near zero


def test_text_and_visual_vectors(features):
    rng = np.random.default_rng(1)
    faces = rng.integers(0, 256, (3, 48, 48, 3), dtype=np.uint8)
    faces[1] = 0  # a black frame
    first, empty = features.text(["I am so happy today", ""])
    assert first.shape == (5, 384) and empty.shape == (0, 384)  # five word pieces, no [CLS] / [SEP]
    visual = features.visual(faces)
    assert visual.shape == (3, 140) and visual.dtype == np.float32 and features.visual(None).shape == (0, 140)
    np.testing.assert_allclose(visual[:, 135:138], faces.reshape(3, -1, 3).mean(1) / 255, rtol=1e-5)
    assert visual[1, 138] == 0 and visual[1, 139] == 0 and visual[0, 139] > 0.1  # black: no contrast, no edges
    # the same transcript in a batch with another: the same vectors (padding is masked)
    again = features.text(["a much longer sentence than the other one by far", "I am so happy today"])[1]
    np.testing.assert_allclose(again, first, atol=1e-4)


def test_the_stages_write_what_the_functions_compute(features):
    from fv2es.config import Config
    from fv2es.media.spectrogram import SpectrogramConfig
    from fv2es.pipeline.stages import MEDIA_STAGES, FaceTextFeatures, VoiceFeatures

    names = [s.name for s in MEDIA_STAGES]
    assert names.index("voice_features") < names.index("spectrogram") < names.index("face_text_features")
    on = config_from_dict({"data": {"hand_crafted": True}})
    assert not VoiceFeatures.enabled(Config()) and VoiceFeatures.enabled(on) and FaceTextFeatures.enabled(on)
    wave = tone(180, 0.7, harmonics=3)
    faces = np.random.default_rng(2).integers(0, 256, (2, 48, 48, 3), dtype=np.uint8)
    batch = pa.table({"waveform": [pack(wave), pack(wave)], "status": ["ok", "decode_error"],
                      "text": ["hello there", None], "faces": [pack(faces), b""]})
    out = FaceTextFeatures()(VoiceFeatures(SpectrogramConfig())(batch))
    rows = out.to_pylist()
    np.testing.assert_array_equal(unpack_features(rows[0]["hcf_audio"], 88), audio_descriptors(wave))
    np.testing.assert_allclose(unpack_features(rows[0]["hcf_text"], 384), features.text(["hello there"])[0], atol=1e-5)
    np.testing.assert_allclose(unpack_features(rows[0]["hcf_visual"], 140), features.visual(faces), atol=1e-5)
    assert [len(rows[1][k]) for k in ("hcf_audio", "hcf_text", "hcf_visual")] == [0, 0, 0]  # failed: empty


def test_collate_reads_shard_features_and_checks_widths():
    cfg = config_from_dict({"model": {"preset": "lf_rnn"}}).model
    rng = np.random.default_rng(2)
    row = {"hcf_text": pack(rng.normal(size=(2, 384)).astype(np.float32)), "hcf_audio": b"",
           "hcf_visual": pack(rng.normal(size=(3, 140)).astype(np.float32))}
    x = ShardFeatureCollate(cfg)([row, {"hcf_text": None, "hcf_audio": None, "hcf_visual": None}])
    assert isinstance(x, HCFInputs)
    assert x.text_lens.tolist() == [2, 0] and x.visual_lens.tolist() == [3, 0] and x.audio_lens.tolist() == [0, 0]
    np.testing.assert_array_equal(x.visual.numpy(), unpack_features(row["hcf_visual"], 140))
    with pytest.raises(ValueError, match="carry no hcf_\\* columns"):
        ShardFeatureCollate(cfg)([{"text": "hi", "faces": None, "pieces": None}])
    seed_sizes = config_from_dict({"model": {"preset": "lf_rnn", "hfc_sizes": [300, 144, 35]}}).model
    with pytest.raises(ConfigError, match="^-hfcs 300 144 35 .*: the hand-crafted features of shards are 384 88 140 "
                                          "wide .*; give -hfcs 384 88 140$"):
        check_shards(seed_sizes, {"hand_crafted": {"sizes": [384, 88, 140]}}, "shards")
    check_shards(seed_sizes, {"hand_crafted": {"sizes": [300, 144, 35]}}, "shards")  # MESM's widths
    with pytest.raises(InputError, match=r"^shards: these shards hold no hand-crafted features, .*"
                                         r"`fv2es preprocess \.\.\. --hand-crafted`$"):
        check_shards(cfg, {"hand_crafted": None}, "shards")


def test_a_baseline_checkpoint_predicts_rows_with_their_features(tmp_path, features):
    # Scoring, evaluation and validation share Predictor: a baseline's checkpoint reads the rows' hcf_* columns.
    from fv2es.models import create_model, save_checkpoint
    from fv2es.predict import Predictor, fusion_weights, read_model_info

    cfg = config_from_dict({"model": {"preset": "lf_transformer"}}).model
    torch.manual_seed(0)
    path = str(tmp_path / "lf.safetensors")
    save_checkpoint(path, create_model(cfg), thresholds=[0.5] * 6)
    predictor = Predictor.from_checkpoint(path)
    assert isinstance(predictor.collate, ShardFeatureCollate) and predictor.modality_names == ["text", "voice", "face"]
    rng = np.random.default_rng(3)
    audio = pack(audio_descriptors(tone(250, 0.8)))
    rows = [{"text": "so happy", "faces": b"", "pieces": b"", "hcf_text": pack(features.text(["so happy"])[0]),
             "hcf_audio": audio, "hcf_visual": pack(features.visual(rng.integers(0, 256, (2, 48, 48, 3), np.uint8)))},
            {"text": "", "faces": b"", "pieces": b"", "hcf_text": b"", "hcf_audio": audio, "hcf_visual": b""}]
    fused, alone = predictor.predict_rows_by_modality(rows)
    assert fused.shape == (2, 6) and np.isfinite(fused).all()
    assert np.isnan(alone["text"][1]).all() and np.isnan(alone["face"][1]).all() and np.isfinite(alone["voice"]).all()
    np.testing.assert_allclose(predictor.predict_rows(rows), fused, atol=1e-6)
    weights = fusion_weights(path, read_model_info(path))["weights"]
    assert list(weights) == ["text", "voice", "face"]
