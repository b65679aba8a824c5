"""The model's input geometry, declared once (MODEL.md, "Inputs for one utterance").

Every stage that produces or consumes model inputs reads these numbers from here: the face
stage's crop size, the spectrogram stage's rate and piece layout, the byte packing of examples,
the collate and ``fv2es model``. :class:`~fv2es.models.config.ModelConfig` exposes them as the
model's inputs, and a :class:`~fv2es.config.Config` whose media sections disagree is refused.

This module imports nothing heavy (no torch), so the media and pipeline modules can use it.
"""

from __future__ import annotations

FACE_SIZE = 48  # side of the square RGB face crop, pixels
FACE_CHANNELS = 3  # RGB
FACE_SHAPE = (FACE_SIZE, FACE_SIZE, FACE_CHANNELS)  # one uint8 crop as stored (H, W, C)

SAMPLE_RATE = 16000  # Hz of the mono waveform the spectrogram is computed on
N_MELS = 128  # mel bins of the spectrogram
N_FFT = 400  # FFT size and window of the spectrogram, samples (25 ms)
HOP_LENGTH = 200  # hop of the spectrogram, samples (12.5 ms: 80 frames per second)
PIECE_FRAMES = 32  # spectrogram frames per piece (0.4 s at a 200-sample hop)
PIECE_BANDS = N_MELS // PIECE_FRAMES  # mel bins are cut into square bands: the piece's channels
PIECE_SHAPE = (PIECE_BANDS, N_MELS // PIECE_BANDS, PIECE_FRAMES)  # (bands, mel bins per band, frames)
