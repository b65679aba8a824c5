"""Synthetic non-speech for the ASR tests, and one transcriber for the session (the real speech of
``data/``, made by espeak-ng with data/make_speech.sh, is the ``speech`` fixture of tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest

SR = 16000


def white_noise(seconds: float, level: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(level * rng.standard_normal(int(seconds * SR)), -1, 1).astype(np.float32)


def music(seconds: float) -> np.ndarray:
    """A music-like mix: a plucked chord sequence (fundamental, fifth and harmonics), 0.5 s per note."""
    t = np.arange(int(seconds * SR)) / SR
    notes = (220.0, 277.18, 329.63, 440.0, 392.0, 349.23, 293.66, 246.94)
    out = np.zeros_like(t)
    for k in range(int(np.ceil(seconds / 0.5))):
        sel = (t >= k * 0.5) & (t < (k + 1) * 0.5)
        envelope = np.exp(-3 * (t[sel] - k * 0.5))
        for ratio, amp in ((1, 0.5), (1.5, 0.2), (2, 0.25), (3, 0.12)):
            out[sel] += amp * envelope * np.sin(2 * np.pi * notes[k % len(notes)] * ratio * t[sel])
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


@pytest.fixture(scope="session")
def default_transcriber():
    """The packaged tiny.en, int8, one CPU thread: built once for the whole ASR test session."""
    from fv2es.asr import AsrConfig, Transcriber

    return Transcriber(AsrConfig())


@pytest.fixture(scope="session")
def two_sentences(default_transcriber, speech):
    return default_transcriber(speech.wav("two.wav"))


@pytest.fixture(scope="session")
def one_sentence(default_transcriber, speech):
    return default_transcriber(speech.wav("one.wav"))
