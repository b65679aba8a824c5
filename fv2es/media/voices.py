"""Who a voice is: a speaker embedding per stretch of speech (the GE2E voice encoder of Resemblyzer).

The network is Resemblyzer's (``resemblyzer`` 0.1.4 on PyPI, Apache-2.0; Wan et al. 2018,
"Generalized end-to-end loss for speaker verification"): a 3-layer LSTM (256 units) over 40 mel
bands of 16 kHz audio, its last hidden state through Linear(256, 256) and a ReLU, L2-normalised.
It was trained to put the same voice near itself and far from others, so the cosine of two
embeddings says how alike two voices are. Its weights ship in this package
(``fv2es/models/weights/ge2e_resemblyzer.safetensors``, fp16, converted by
``tools/convert_resemblyzer.py``; provenance beside them). The front end is Resemblyzer's
(librosa's power mel spectrogram, not a log one: 25 ms Hann window, 10 ms hop, Slaney mel bands
with Slaney area normalisation, zero-padded centred frames), written with torchaudio.

An utterance is embedded as Resemblyzer does: partial windows of 160 frames (1.6 s), each
embedded on its own, their mean L2-normalised. Diarization (:mod:`fv2es.media.diarize`) embeds
windows of its own choosing with :meth:`VoiceEncoder.mels` and the network.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

import numpy as np
import torch
from torch import nn

SAMPLE_RATE = 16000
N_FFT = 400  # 25 ms
HOP = 160  # 10 ms
N_MELS = 40
PARTIAL_FRAMES = 160  # 1.6 s: the length the encoder was trained on
WEIGHTS_FILE = "ge2e_resemblyzer.safetensors"
PROVENANCE_FILE = "ge2e_resemblyzer.json"


class GE2E(nn.Module):
    """Mel frames (N, T, 40) -> speaker embeddings (N, 256), non-negative and L2-normalised."""

    def __init__(self, hidden: int = 256, layers: int = 3, dim: int = 256):
        super().__init__()
        self.lstm = nn.LSTM(N_MELS, hidden, layers, batch_first=True)
        self.linear = nn.Linear(hidden, dim)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        _, (hidden, _) = self.lstm(mels)
        raw = torch.relu(self.linear(hidden[-1]))
        return raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)


class VoiceEncoder:
    """The packaged voice encoder with its mel front end, on CPU (it is small: 1.4 M parameters)."""

    def __init__(self, threads: int | None = None):
        import torchaudio

        if threads:
            torch.set_num_threads(threads)
        self.net = GE2E().eval()
        self.net.load_state_dict(packaged_weights())
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=N_FFT, hop_length=HOP, n_mels=N_MELS, f_min=0.0,
            f_max=SAMPLE_RATE / 2, power=2.0, norm="slaney", mel_scale="slaney", center=True, pad_mode="constant")

    def mels(self, wav: np.ndarray) -> torch.Tensor:
        """16 kHz mono float audio -> its mel frames (T, 40), one per 10 ms."""
        return self.mel(torch.as_tensor(np.asarray(wav, np.float32))).T.contiguous()

    @torch.no_grad()
    def embed_frames(self, mels: torch.Tensor, starts: list[int]) -> np.ndarray:
        """The embeddings (len(starts), 256) of the 1.6 s windows of ``mels`` beginning at ``starts``
        (frames); windows past the end are zero-padded (silence in a power spectrogram)."""
        if not starts:
            return np.zeros((0, 256), np.float32)
        need = max(starts) + PARTIAL_FRAMES
        if need > len(mels):
            mels = torch.cat([mels, mels.new_zeros(need - len(mels), N_MELS)])
        batch = torch.stack([mels[s:s + PARTIAL_FRAMES] for s in starts])
        return self.net(batch).numpy()

    def embed_utterance(self, wav: np.ndarray, rate: float = 1.3, min_coverage: float = 0.75) -> np.ndarray:
        """One embedding (256,) for ``wav``: the L2-normalised mean of its partial windows, placed
        as Resemblyzer places them (``rate`` windows a second; the last kept if it covers at least
        ``min_coverage`` of itself)."""
        starts = partial_starts(len(wav), rate, min_coverage)
        total = starts[-1] * HOP + PARTIAL_FRAMES * HOP
        wav = np.pad(np.asarray(wav, np.float32), (0, max(0, total - len(wav))))
        partials = self.embed_frames(self.mels(wav), starts)
        mean = partials.mean(axis=0)
        return mean / np.linalg.norm(mean)


def partial_starts(n_samples: int, rate: float = 1.3, min_coverage: float = 0.75) -> list[int]:
    """Where Resemblyzer's partial windows of an utterance of ``n_samples`` begin (mel frames)."""
    n_frames = int(np.ceil((n_samples + 1) / HOP))
    step = int(np.round(SAMPLE_RATE / rate / HOP))
    if not 0 < step <= PARTIAL_FRAMES:
        raise ValueError(f"rate {rate} gives a window step of {step} frames (1..{PARTIAL_FRAMES})")
    starts = list(range(0, max(1, n_frames - PARTIAL_FRAMES + step + 1), step))
    coverage = (n_samples - starts[-1] * HOP) / (PARTIAL_FRAMES * HOP)
    if coverage < min_coverage and len(starts) > 1:
        starts = starts[:-1]
    return starts


@lru_cache(maxsize=1)
def provenance() -> dict:
    """Where the packaged weights came from (package, version, file, sha256, licence)."""
    return json.loads(resources.files("fv2es.models").joinpath("weights", PROVENANCE_FILE).read_text())


def packaged_weights() -> dict[str, torch.Tensor]:
    """The encoder's state dict, from the packaged fp16 file, as float32."""
    from safetensors.torch import load

    state = load(resources.files("fv2es.models").joinpath("weights", WEIGHTS_FILE).read_bytes())
    return {k: v.float() for k, v in state.items()}
