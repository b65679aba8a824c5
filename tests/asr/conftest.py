"""Real speech for the ASR tests: clips espeak-ng made (data/make_speech.sh), and synthetic non-speech."""

from __future__ import annotations

import json
import re
import wave
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
SR = 16000


def load_wav(name: str) -> np.ndarray:
    """A committed 16 kHz mono 16-bit clip as float32 in [-1, 1]."""
    with wave.open(str(DATA / name)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SR, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768


def truth(name: str) -> list[dict]:
    """The sentences of clip ``name``: text, start and end (seconds), as make_speech.sh placed them."""
    return json.loads((DATA / "speech.json").read_text())[name]["sentences"]


def normalise(text: str) -> list[str]:
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate: (substitutions + deletions + insertions) / reference words (Levenshtein on words)."""
    ref, hyp = normalise(reference), normalise(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1] / max(len(ref), 1)


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
def two_sentences(default_transcriber):
    return default_transcriber(load_wav("two.wav"))


@pytest.fixture(scope="session")
def one_sentence(default_transcriber):
    return default_transcriber(load_wav("one.wav"))
