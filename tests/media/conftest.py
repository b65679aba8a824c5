"""Tiny generated clips for the media tests (pytorchvideo's ``temp_encoded_video_with_audio`` idea).

Every clip is made with :func:`fv2es.media.encode.write_clip` into ``tmp_path``, small enough
(64x48 or 160x120, at most 3 s) that encoding costs milliseconds.
"""

from __future__ import annotations

import numpy as np
import pytest

from fv2es.media.encode import write_clip


def sine(freq_hz: float, seconds: float, sample_rate: int, amplitude: float = 0.5) -> np.ndarray:
    """A float32 sine tone."""
    t = np.arange(round(seconds * sample_rate)) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


def dominant_hz(samples: np.ndarray, sample_rate: int) -> float:
    """The frequency of the largest FFT bin."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.argmax(spectrum) * sample_rate / len(samples))


def ramp_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Frames whose mean grey level encodes the frame index (i * 8), to identify frames after decoding."""
    levels = (np.arange(n) * 8 % 256).astype(np.uint8)
    return np.broadcast_to(levels[:, None, None, None], (n, height, width, 3)).copy()


def frame_index(frame: np.ndarray) -> int:
    """Invert :func:`ramp_frames` (H.264 is lossy, so round the mean grey level)."""
    return round(float(frame.mean()) / 8)


def marker_frames(n: int, height: int = 48, width: int = 64) -> np.ndarray:
    """Black frames with a white 12x12 square in the top-left corner."""
    frames = np.zeros((n, height, width, 3), np.uint8)
    frames[:, :12, :12] = 255
    return frames


@pytest.fixture
def av_clip(tmp_path):
    """2 s, 30 fps, 64x48 ramp frames, 44.1 kHz mono 440 Hz tone."""
    path = tmp_path / "av.mp4"
    write_clip(path, ramp_frames(60), 30, sine(440, 2.0, 44100), 44100)
    return path


@pytest.fixture
def stereo_clip(tmp_path):
    """1 s, 10 fps, 48 kHz stereo: 500 Hz on the left channel, 1500 Hz on the right."""
    path = tmp_path / "stereo.mp4"
    audio = np.stack([sine(500, 1.0, 48000), sine(1500, 1.0, 48000)])
    write_clip(path, ramp_frames(10), 10, audio, 48000)
    return path


@pytest.fixture
def vfr_clip(tmp_path):
    """Variable frame rate: 8 ramp frames at irregular times (ms), no audio."""
    path = tmp_path / "vfr.mp4"
    pts_ms = [0, 40, 90, 520, 560, 1010, 1400, 1990]
    write_clip(path, ramp_frames(len(pts_ms)), 30, pts_ms=pts_ms)
    return path, pts_ms


@pytest.fixture
def video_only_clip(tmp_path):
    """1 s, 10 fps, 160x120, no audio stream."""
    path = tmp_path / "video_only.mp4"
    write_clip(path, ramp_frames(10, 120, 160), 10)
    return path


@pytest.fixture
def audio_only_clip(tmp_path):
    """1.5 s of 16 kHz mono 300 Hz tone, no video stream."""
    path = tmp_path / "audio_only.mp4"
    write_clip(path, None, 30, sine(300, 1.5, 16000), 16000)
    return path
