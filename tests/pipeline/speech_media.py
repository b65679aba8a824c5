"""Test media with real speech: the espeak-ng WAVs of tests/asr/data muxed under a talking-face picture."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from fv2es.media.decode import DecodeConfig, decode
from fv2es.media.democorpus import make_demo_corpus
from fv2es.media.encode import write_clip
from tests.asr.conftest import SR
from tests.asr.conftest import load_wav as read_wav  # noqa: F401  (the speech tests' names)
from tests.asr.conftest import truth as sentences  # noqa: F401
from tests.asr.conftest import wer as word_error_rate  # noqa: F401

RATE = SR


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
