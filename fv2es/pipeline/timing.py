"""Per-segment times when one call does the work of several segments."""

from __future__ import annotations

import numpy as np


def apportion(total_ms: float, weights) -> np.ndarray:
    """``total_ms`` split over items in proportion to ``weights`` (equally when they are all 0).

    Used for the per-segment time columns when one call does the work of several segments: the
    model's forward pass (weights: pieces + face frames + 1 for the transcript), a decoded chunk
    (weights: seconds of media), a spectrogram call (weights: samples)."""
    w = np.asarray(weights, dtype=np.float64)
    if len(w) == 0:
        return w
    total = w.sum()
    return total_ms * (w / total if total > 0 else np.full(len(w), 1.0 / len(w)))
