"""Test media with real speech: the espeak-ng WAVs of tests/asr/data muxed under a talking-face picture."""

from __future__ import annotations

import json
import re
import tempfile
import wave
from pathlib import Path

import numpy as np

from fv2es.media.decode import DecodeConfig, decode
from fv2es.media.democorpus import make_demo_corpus
from fv2es.media.encode import write_clip

SPEECH_DIR = Path(__file__).resolve().parents[1] / "asr" / "data"
RATE = 16000


def read_wav(name: str) -> np.ndarray:
    """A committed 16 kHz mono 16-bit WAV as float32 in [-1, 1]."""
    with wave.open(str(SPEECH_DIR / name)) as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (RATE, 1, 2)
        return np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768


def sentences(name: str) -> list[dict]:
    """The truth of a WAV: its sentences' text, start and end (seconds)."""
    return json.loads((SPEECH_DIR / "speech.json").read_text())[name]["sentences"]


def face_frames(seconds: float, fps: int = 10) -> np.ndarray:
    """``seconds`` of the demo corpus's face, uint8 (T, 120, 160, 3)."""
    with tempfile.TemporaryDirectory() as tmp:
        make_demo_corpus(tmp, videos=1, seed=3, seconds=(seconds, seconds), fps=fps)
        (row,) = decode(str(Path(tmp) / "clip_00000.mp4"), None, DecodeConfig(img_interval_ms=1000 // fps))
    return row.frames


def speech_video(path: Path, audio: np.ndarray, fps: int = 10) -> Path:
    """An mp4 of the demo face speaking ``audio`` (16 kHz mono float32)."""
    frames = face_frames(len(audio) / RATE, fps)
    write_clip(str(path), frames, fps, audio, RATE)
    return path


def noise(seconds: float, level: float = 0.003, seed: int = 0) -> np.ndarray:
    """Faint white noise: a room with nobody speaking."""
    return (np.random.default_rng(seed).standard_normal(round(seconds * RATE)) * level).astype(np.float32)


def words(text: str) -> list[str]:
    """Lower-case words without punctuation (Whisper writes "Please ... coffee.")."""
    return re.findall(r"[a-z0-9']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Levenshtein distance over words / reference length."""
    ref, hyp = words(reference), words(hypothesis)
    dist = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, dist[0] = dist[0], i
        for j, h in enumerate(hyp, 1):
            prev, dist[j] = dist[j], min(dist[j] + 1, dist[j - 1] + 1, prev + (r != h))
    return dist[len(hyp)] / max(1, len(ref))
