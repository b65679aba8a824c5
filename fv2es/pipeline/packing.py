"""Arrays in Arrow rows: raw bytes plus a count.

Ray Data and Parquet carry ragged tensors badly (a zero-length array next to a non-empty one is
stored as a pickled object and blocks no longer concatenate). Every per-segment array here has a
fixed inner shape, so a segment's array travels as ``bytes`` plus its length: zero-copy to build,
one ``np.frombuffer`` to read, and the same layout in the example shards on disk.
"""

from __future__ import annotations

import numpy as np

# The model's input geometry, declared once in fv2es.models.geometry (no torch import).
from fv2es.models.geometry import FACE_SHAPE, PIECE_SHAPE  # uint8 RGB crop; float32 spectrogram piece


def pack(array: np.ndarray) -> bytes:
    """The C-order bytes of ``array``."""
    return np.ascontiguousarray(array).tobytes()


def unpack(data: bytes | None, inner_shape: tuple[int, ...], dtype) -> np.ndarray:
    """Inverse of :func:`pack` for an array of shape ``(N, *inner_shape)``; None -> N = 0."""
    if data is None or len(data) == 0:
        return np.zeros((0, *inner_shape), dtype)
    return np.frombuffer(data, dtype=dtype).reshape(-1, *inner_shape)


def unpack_faces(data: bytes | None) -> np.ndarray:
    """Face crops ``(N, 48, 48, 3)`` uint8 of a row's ``faces`` column."""
    return unpack(data, FACE_SHAPE, np.uint8)


def unpack_pieces(data: bytes | None) -> np.ndarray:
    """Spectrogram pieces ``(N, 4, 32, 32)`` float32 of a row's ``pieces`` column."""
    return unpack(data, PIECE_SHAPE, np.float32)


def unpack_frames(row: dict) -> np.ndarray:
    """A decoded row's frames ``(frames_sampled, frame_height, frame_width, 3)`` uint8 (read-only)."""
    return unpack(row["frames"], (row["frame_height"], row["frame_width"], 3), np.uint8)[: row["frames_sampled"]]


def unpack_frame_times(row: dict) -> np.ndarray:
    """A decoded row's per-frame presentation times (seconds from media start), float64."""
    return unpack(row["frame_times"], (), np.float64)


def unpack_waveform(row: dict) -> np.ndarray:
    """A decoded row's mono waveform, float32 at the decode sample rate (read-only)."""
    return unpack(row["waveform"], (), np.float32)
