"""The model's input: a ragged batch of utterances, packed, and the collate that builds it.

Frames and spectrogram pieces of all utterances are concatenated along the first axis (so the
CNN and NesT see one big batch) with per-utterance lengths; a length of 0 means the modality is
absent for that utterance. Text is tokenised to (B, T); an empty transcript marks text absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
import torch

from fv2es.models.geometry import FACE_CHANNELS, FACE_SHAPE, FACE_SIZE, PIECE_SHAPE

# The seed's per-channel face normalisation (RGB, on 0..255 crops).
FACE_MEAN = (159.0, 111.0, 102.0)
FACE_STD = (37.0, 33.0, 32.0)


@dataclass(frozen=True)
class ModelInputs:
    """A ragged batch of B utterances."""

    text_ids: torch.Tensor  # (B, T) token ids
    text_mask: torch.Tensor  # (B, T) attention mask
    text_present: torch.Tensor  # (B,) bool: False for an empty transcript
    faces: torch.Tensor  # (sum face_lens, 3, 48, 48) float, normalised
    face_lens: torch.Tensor  # (B,) frames per utterance
    pieces: torch.Tensor  # (sum piece_lens, 4, 32, 32) float spectrogram pieces
    piece_lens: torch.Tensor  # (B,) pieces per utterance

    @property
    def batch_size(self) -> int:
        """Number of utterances B."""
        return int(self.face_lens.shape[0])

    def to(self, device, non_blocking: bool = False) -> ModelInputs:
        """The same batch with every tensor on ``device``."""
        return replace(
            self, **{f.name: getattr(self, f.name).to(device, non_blocking=non_blocking) for f in fields(self)}
        )


def normalize_faces(crops: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 crops (N, 48, 48, 3) RGB 0..255 -> float32 (N, 3, 48, 48) with the seed's mean/std."""
    x = torch.as_tensor(np.asarray(crops)).to(torch.float32)
    if x.ndim != 4 or x.shape[-1] != FACE_CHANNELS:
        raise ValueError(f"face crops must be (N, H, W, 3), got {tuple(x.shape)}")
    mean = torch.tensor(FACE_MEAN).view(1, 1, 1, 3)
    std = torch.tensor(FACE_STD).view(1, 1, 1, 3)
    return ((x - mean) / std).permute(0, 3, 1, 2).contiguous()


def _stack(arrays: Sequence, shape: tuple[int, ...], dtype) -> tuple[torch.Tensor, torch.Tensor]:
    lengths, parts = [], []
    for a in arrays:
        if a is None or len(a) == 0:
            lengths.append(0)
            continue
        arr = np.asarray(a)
        # Arrays unpacked from Arrow bytes are read-only; torch wants writable memory.
        t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
        if tuple(t.shape[1:]) != shape:
            raise ValueError(f"expected items of shape (N, {', '.join(map(str, shape))}), got {tuple(t.shape)}")
        parts.append(t)
        lengths.append(t.shape[0])
    packed = torch.cat(parts).to(dtype) if parts else torch.zeros((0, *shape), dtype=dtype)
    return packed, torch.tensor(lengths, dtype=torch.long)


class Collate:
    """Builds :class:`ModelInputs` from per-utterance dicts.

    Each sample has ``text`` (str), ``faces`` (uint8 (N, 48, 48, 3), may be empty or None) and
    ``pieces`` (float (P, 4, 32, 32), may be empty or None). Picklable; the tokenizer is
    loaded once per instance.
    """

    def __init__(self, text_model: str, max_len: int):
        from fv2es.models.text import load_tokenizer

        self.tokenizer = load_tokenizer(text_model)
        self.max_len = max_len

    def __call__(self, samples: Sequence[dict]) -> ModelInputs:
        """Tokenise, stack and normalise ``samples`` into one :class:`ModelInputs`."""
        texts = [(s.get("text") or "").strip() for s in samples]
        tokens = self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.max_len, return_tensors="pt"
        )
        crops = [s.get("faces") for s in samples]
        faces_u8, face_lens = _stack(crops, FACE_SHAPE, torch.uint8)
        faces = normalize_faces(faces_u8) if len(faces_u8) else torch.zeros((0, FACE_CHANNELS, FACE_SIZE, FACE_SIZE))
        pieces, piece_lens = _stack([s.get("pieces") for s in samples], PIECE_SHAPE, torch.float32)
        return ModelInputs(
            text_ids=tokens["input_ids"],
            text_mask=tokens["attention_mask"],
            text_present=torch.tensor([bool(t) for t in texts]),
            faces=faces,
            face_lens=face_lens,
            pieces=pieces,
            piece_lens=piece_lens,
        )
