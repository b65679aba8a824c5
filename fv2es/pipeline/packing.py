"""Arrays in Arrow rows: raw bytes plus a count.

Ray Data and Parquet carry ragged tensors badly (a zero-length array next to a non-empty one is
stored as a pickled object and blocks no longer concatenate). Every per-segment array here has a
fixed inner shape, so a segment's array travels as ``bytes`` plus its length: zero-copy to build,
one ``np.frombuffer`` to read, and the same layout in the example shards on disk.
"""

from __future__ import annotations

import numpy as np

FACE_SHAPE = (48, 48, 3)  # uint8 RGB crop
PIECE_SHAPE = (4, 32, 32)  # float32 spectrogram piece


def pack(array: np.ndarray) -> bytes:
    """The C-order bytes of ``array``."""
    return np.ascontiguousarray(array).tobytes()


def unpack(data: bytes | None, inner_shape: tuple[int, ...], dtype) -> np.ndarray:
    """Inverse of :func:`pack` for an array of shape ``(N, *inner_shape)``; None -> N = 0."""
    if data is None or len(data) == 0:
        return np.zeros((0, *inner_shape), dtype)
    return np.frombuffer(data, dtype=dtype).reshape(-1, *inner_shape)


def unpack_faces(data: bytes | None) -> np.ndarray:
    return unpack(data, FACE_SHAPE, np.uint8)


def unpack_pieces(data: bytes | None) -> np.ndarray:
    return unpack(data, PIECE_SHAPE, np.float32)
