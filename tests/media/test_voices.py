"""The packaged GE2E voice encoder against Resemblyzer's own embeddings of the committed test voices
(tests/media/data/resemblyzer_reference.npz, made by make_resemblyzer_reference.py with the real
``resemblyzer`` 0.1.4, librosa and webrtcvad in a scratch environment)."""

from __future__ import annotations

import hashlib
import wave
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from fv2es.media import diarize, voices
from fv2es.media.voices import HOP, PARTIAL_FRAMES, VoiceEncoder, partial_starts, provenance

DATA = Path(__file__).parent / "data"
VOICES = Path(__file__).parents[1] / "pipeline" / "data" / "voices"


def read(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768


@pytest.fixture(scope="module")
def encoder():
    return VoiceEncoder()


@pytest.fixture(scope="module")
def reference():
    return dict(np.load(DATA / "resemblyzer_reference.npz"))


def test_embeddings_equal_resemblyzers(encoder, reference):
    wavs = [read(p) for p in sorted(VOICES.glob("v*_*.wav"))]
    assert len(wavs) == len(reference["utterance"]) == 6
    ours = np.stack([encoder.embed_utterance(w) for w in wavs])
    cos = (ours * reference["utterance"]).sum(axis=1)
    assert cos.min() >= 0.99, cos  # measured: 0.9999995 and up (fp16 weights)
    partials = []
    for w, count in zip(wavs, reference["partial_counts"]):
        starts = partial_starts(len(w))
        assert len(starts) == count  # the windows are placed where Resemblyzer places them
        padded = np.pad(w, (0, max(0, (starts[-1] + PARTIAL_FRAMES) * HOP - len(w))))
        partials.append(encoder.embed_frames(encoder.mels(padded), starts))
    cos = (np.concatenate(partials) * reference["partials"]).sum(axis=1)
    assert len(cos) == 12 and cos.min() >= 0.99, cos
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5) and ours.min() >= 0


def test_one_voice_is_nearer_itself_than_another(encoder):
    e = {p.stem: encoder.embed_utterance(read(p)) for p in sorted(VOICES.glob("v*_*.wav"))}
    same = [e["v0_0"] @ e["v0_1"], e["v1_0"] @ e["v1_1"]]
    other = [e[f"v0_{i}"] @ e[f"v1_{j}"] for i in (0, 1) for j in (0, 1)]
    assert min(same) > 0.85 and max(other) < 0.65  # measured: 0.881, 0.862 against 0.548-0.615


def test_the_packaged_weights_are_the_recorded_ones():
    info = provenance()
    data = resources.files("fv2es.models").joinpath("weights", voices.WEIGHTS_FILE).read_bytes()
    assert hashlib.sha256(data).hexdigest() == info["converted"]["sha256"] and len(data) == info["converted"]["bytes"]
    assert info["source"]["package"] == "resemblyzer" and info["source"]["version"] == "0.1.4"
    assert info["license"]["name"] == "Apache-2.0" and "Apache License" in info["license"]["text"]
    state = voices.packaged_weights()
    assert sum(v.numel() for v in state.values()) == info["converted"]["parameters"] == 1_423_616
    assert (diarize.HOP, diarize.SAMPLE_RATE) == (voices.HOP, voices.SAMPLE_RATE)

