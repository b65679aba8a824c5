"""Mel-spectrogram pieces for the audio branch (MODEL.md, "audio").

A 16 kHz mono waveform -> ``torchaudio.transforms.MelSpectrogram`` (power, no log in the seed)
-> (128 mel bins, T frames) -> cut along time into pieces of 32 frames (the last zero-padded)
-> each (128, 32) piece reshaped to (4, 32, 32): band ``b`` = mel bins ``32b .. 32b+31``.

Edge cases, decided here so every caller agrees:

- Empty audio gives 0 pieces: the audio modality is absent for that segment.
- Audio shorter than one window (``n_fft`` samples) is zero-padded at the end to ``n_fft`` samples
  before the transform (the centred STFT's reflect padding needs more than ``n_fft // 2``
  samples), which gives 3 frames and so exactly 1 piece.
- Input is sanitised first: NaN -> 0, then clipped to [-1, 1] (decoders may overshoot after
  resampling; a stray NaN would poison every frame it touches).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fv2es.models import geometry

if TYPE_CHECKING:  # torch is imported where it computes: the config and decode tasks never do
    import torch


@dataclass(frozen=True)
class SpectrogramConfig:
    """Options of :class:`SpectrogramPieces`; the defaults are the seed's."""

    sample_rate: int = geometry.SAMPLE_RATE  # Hz of the (already resampled) mono waveform
    n_fft: int = geometry.N_FFT  # FFT size, samples (25 ms)
    win_length: int = geometry.N_FFT  # window length, samples
    hop_length: int = geometry.HOP_LENGTH  # hop, samples (12.5 ms -> 80 frames/s)
    n_mels: int = geometry.N_MELS  # mel bins; must be a multiple of piece_frames
    piece_frames: int = geometry.PIECE_FRAMES  # frames per piece (0.4 s); also the band height
    log: bool = False  # seed feeds the power mel; True -> log(mel + 1e-6)

    def __post_init__(self):
        if self.n_mels % self.piece_frames:
            raise ValueError("n_mels must be a multiple of piece_frames to form square bands")

    @property
    def bands(self) -> int:
        """Channels of a piece: mel bins split into bands of ``piece_frames`` bins."""
        return self.n_mels // self.piece_frames


def num_frames(num_samples: int, config: SpectrogramConfig | None = None) -> int:
    """Spectrogram frames the transform yields for ``num_samples`` samples (centred STFT)."""
    config = config or SpectrogramConfig()
    if num_samples <= 0:
        return 0
    return 1 + max(num_samples, config.n_fft) // config.hop_length


def num_pieces(duration_s: float, config: SpectrogramConfig | None = None) -> int:
    """Exact number of pieces for ``duration_s`` seconds of audio (samples = round(d * rate))."""
    config = config or SpectrogramConfig()
    frames = num_frames(round(duration_s * config.sample_rate), config)
    return math.ceil(frames / config.piece_frames)


class SpectrogramPieces:
    """Waveform -> float32 (P, bands, piece_frames, piece_frames) mel pieces.

    The ``MelSpectrogram`` module is built once; pickling carries only the config.

    Example::

        pieces = SpectrogramPieces()(waveform)   # float32 (P, 4, 32, 32) numpy
    """

    def __init__(self, config: SpectrogramConfig | None = None):
        import torchaudio  # imported here (torch too): only audio workers need it

        self.config = config or SpectrogramConfig()
        c = self.config
        with warnings.catch_warnings():
            # The seed's 128 mels over 201 FFT bins leave a few empty low filters; torchaudio
            # warns about it on every construction. Those bins are always 0: expected, harmless.
            warnings.filterwarnings("ignore", message="At least one mel filterbank has all zero")
            self.mel = torchaudio.transforms.MelSpectrogram(
                sample_rate=c.sample_rate,
                n_fft=c.n_fft,
                win_length=c.win_length,
                hop_length=c.hop_length,
                n_mels=c.n_mels,
            ).eval()

    def __getstate__(self):
        return {"config": self.config}

    def __setstate__(self, state):
        self.__init__(state["config"])

    def __call__(self, waveform: np.ndarray | torch.Tensor) -> np.ndarray:
        """Pieces of one mono waveform, shape (samples,) or (1, samples), values nominally in [-1, 1]."""
        x = self._prepare(waveform)
        if x.numel() == 0:
            return self._empty()
        return self._pieces(self._mel(x[None])[0])

    def many(self, waveforms: Sequence[np.ndarray | torch.Tensor]) -> list[np.ndarray]:
        """Pieces of several waveforms; equal-length ones share one transform call.

        Waveforms of different lengths are not padded into one batch: the padding would change
        the last frames (the STFT reflects at the true end), so each length is its own batch.
        """
        import torch

        prepared = [self._prepare(w) for w in waveforms]
        out: list[np.ndarray | None] = [None] * len(prepared)
        by_length: dict[int, list[int]] = {}
        for i, x in enumerate(prepared):
            by_length.setdefault(x.numel(), []).append(i)
        for length, idx in by_length.items():
            if length == 0:
                for i in idx:
                    out[i] = self._empty()
                continue
            mels = self._mel(torch.stack([prepared[i] for i in idx]))
            for i, mel in zip(idx, mels):
                out[i] = self._pieces(mel)
        return out

    def _prepare(self, waveform: np.ndarray | torch.Tensor) -> torch.Tensor:
        import torch

        x = torch.as_tensor(np.asarray(waveform) if not isinstance(waveform, torch.Tensor) else waveform)
        if x.dim() == 2 and x.shape[0] == 1:
            x = x[0]
        if x.dim() != 1:
            raise ValueError(f"expected a mono waveform (samples,), got shape {tuple(x.shape)}")
        x = torch.nan_to_num(x.float(), nan=0.0).clamp(-1.0, 1.0)
        if 0 < x.numel() < self.config.n_fft:
            x = torch.nn.functional.pad(x, (0, self.config.n_fft - x.numel()))
        return x

    def _mel(self, batch: torch.Tensor) -> torch.Tensor:
        import torch

        with torch.no_grad():
            mel = self.mel(batch)  # (B, n_mels, T)
            return torch.log(mel + 1e-6) if self.config.log else mel

    def _pieces(self, mel: torch.Tensor) -> np.ndarray:
        import torch

        c = self.config
        frames = mel.shape[-1]
        count = math.ceil(frames / c.piece_frames)
        mel = torch.nn.functional.pad(mel, (0, count * c.piece_frames - frames))
        # (n_mels, P*F) -> (P, n_mels, F) -> (P, bands, F, F): band b holds mel bins F*b .. F*b+F-1.
        pieces = mel.reshape(c.n_mels, count, c.piece_frames).permute(1, 0, 2)
        pieces = pieces.reshape(count, c.bands, c.piece_frames, c.piece_frames)
        return pieces.contiguous().numpy().astype(np.float32, copy=False)

    def _empty(self) -> np.ndarray:
        f = self.config.piece_frames
        return np.zeros((0, self.config.bands, f, f), np.float32)
