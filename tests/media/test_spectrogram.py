"""SpectrogramPieces: counts, band layout, edge cases."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torchaudio

from fv2es.media.spectrogram import SpectrogramConfig, SpectrogramPieces, num_frames, num_pieces

SR = 16000
# The seed's 128 mels over 201 FFT bins leave empty filters; the reference transforms built here warn.
pytestmark = pytest.mark.filterwarnings("ignore:At least one mel filterbank")


@pytest.fixture(scope="module")
def spec() -> SpectrogramPieces:
    return SpectrogramPieces()


def _tone(seconds: float, freq: float = 440.0, amp: float = 0.5, seed: int = 0) -> np.ndarray:
    t = np.arange(round(seconds * SR)) / SR
    noise = np.random.default_rng(seed).normal(0, 0.01, t.shape)
    return (amp * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


@pytest.mark.parametrize(
    ("seconds", "pieces"),
    [
        (0.0, 0),
        (0.01, 1),  # shorter than one window: padded to n_fft -> 3 frames
        (0.4, 2),  # 6400 samples -> 33 frames (the centred STFT adds one)
        (1.0, 3),  # 81 frames
        (10.0, 26),  # 801 frames
        (6399 / SR, 1),  # 32 frames exactly: the last duration that fits one piece
        (6400 / SR, 2),
        (12799 / SR, 2),  # 64 frames
        (12800 / SR, 3),
    ],
)
def test_piece_counts(spec, seconds, pieces):
    assert num_pieces(seconds) == pieces
    out = spec(np.zeros(round(seconds * SR), np.float32) + 0.1)
    assert out.shape == (pieces, 4, 32, 32) and out.dtype == np.float32


def test_num_frames_matches_torchaudio():
    mel = torchaudio.transforms.MelSpectrogram(
        sample_rate=SR, n_fft=400, win_length=400, hop_length=200, n_mels=128
    )
    for n in (400, 401, 599, 600, 6399, 16000):
        assert mel(torch.zeros(n)).shape[-1] == num_frames(n)


def test_band_layout_equals_direct_reshape(spec):
    wave = _tone(1.0, freq=300.0) + _tone(1.0, freq=3000.0, amp=0.2, seed=1)
    reference = torchaudio.transforms.MelSpectrogram(
        sample_rate=SR, n_fft=400, win_length=400, hop_length=200, n_mels=128
    )(torch.from_numpy(wave)).numpy()
    assert reference.shape == (128, 81)
    pieces = spec(wave)
    assert pieces.shape == (3, 4, 32, 32)
    padded = np.zeros((128, 96), np.float32)
    padded[:, :81] = reference
    for p in range(3):
        for b in range(4):
            np.testing.assert_allclose(
                pieces[p, b], padded[32 * b : 32 * b + 32, 32 * p : 32 * p + 32], rtol=1e-5, atol=1e-6
            )
    # The zero padding of the last piece is exactly zero.
    assert (pieces[2, :, :, 17:] == 0).all()


def test_silence_is_finite(spec):
    out = spec(np.zeros(SR, np.float32))
    assert np.isfinite(out).all() and (out == 0).all()
    logged = SpectrogramPieces(SpectrogramConfig(log=True))(np.zeros(SR, np.float32))
    assert np.isfinite(logged).all()


def test_clipping(spec):
    wave = _tone(0.5, amp=0.9)
    loud = wave * 5.0
    out = spec(loud)
    np.testing.assert_allclose(out, spec(np.clip(loud, -1, 1)), rtol=1e-6)
    assert not np.allclose(out, spec(wave))
    with_nan = wave.copy()
    with_nan[100] = np.nan
    assert np.isfinite(spec(with_nan)).all()


def test_batch_independence(spec):
    a, b, c = _tone(1.0, 200.0), _tone(0.7, 900.0, seed=2), _tone(1.0, 1500.0, seed=3)
    together = spec.many([a, b, np.zeros(0, np.float32), c])
    singles = [spec(a), spec(b), spec(np.zeros(0, np.float32)), spec(c)]
    for x, y in zip(together, singles):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)
    # Same input, other call: no state carried between calls.
    np.testing.assert_array_equal(spec(a), singles[0])


def test_accepts_tensor_and_channel_dim(spec):
    wave = _tone(0.3)
    np.testing.assert_array_equal(spec(torch.from_numpy(wave)[None]), spec(wave))
    with pytest.raises(ValueError):
        spec(np.zeros((2, 100), np.float32))


def test_pickle_roundtrip(spec):
    clone = pickle.loads(pickle.dumps(spec))
    wave = _tone(0.5)
    np.testing.assert_array_equal(clone(wave), spec(wave))
