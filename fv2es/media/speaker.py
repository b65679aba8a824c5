"""Whose mouth moves with the speech: audio-visual synchrony over one segment's face tracks.

For each track, the mouth region (from MTCNN's mouth-corner landmarks, else the lower third of the
box) is cut from densely sampled frames (``faces.sync_interval_ms``, 80 ms by default: the
syllable rate of speech is 3-6 Hz, which a 500 ms sampling cannot see) as a small grey patch. The
speech envelope is the audio's RMS around each of those frames. A speaking mouth darkens and
brightens as it opens and shuts with the sound, so some of its pixels follow the envelope over
time; a listener's do not. A track's synchrony is the mean squared correlation (Pearson, over
time) of the envelope with its best-following quarter of the patch's pixels: the Gaussian
mutual-information measure of Hershey & Movellan (2000), which SyncNet-style detectors learn to do
better. No model, a few milliseconds per segment.
"""

from __future__ import annotations

import numpy as np

from fv2es.media.tracks import Track

PATCH = (12, 20)  # rows, columns of the grey mouth patch motion is measured on
SPEECH_RMS = 0.01  # an envelope frame this loud (about -40 dBFS) counts as sound
SPEECH_SHARE = 0.1  # a segment has speech when at least this share of its frames is sound
MIN_SYNC = 0.15  # below this synchrony no track is taken for the speaker (chance: ~0.1 at 30 frames)


def envelope(audio: np.ndarray, sample_rate: int, start_s: float, times: np.ndarray) -> np.ndarray:
    """The RMS of ``audio`` (which starts at ``start_s``) around each of ``times``: over the half
    intervals to the neighbouring times."""
    times = np.asarray(times, np.float64)
    if len(times) == 0:
        return np.zeros(0)
    gaps = np.diff(times)
    half = np.concatenate([[gaps[0] if len(gaps) else 0.04], gaps]) / 2
    out = np.zeros(len(times))
    for i, (t, h) in enumerate(zip(times, half)):
        a = max(0, round((t - h - start_s) * sample_rate))
        b = min(len(audio), max(a + 1, round((t + h - start_s) * sample_rate)))
        if a < len(audio):
            out[i] = float(np.sqrt(np.mean(np.square(audio[a:b], dtype=np.float64))))
    return out


def has_speech(env: np.ndarray) -> bool:
    """Whether an envelope holds enough sound to look for its speaker (silence, hum and faint
    noise do not)."""
    return len(env) > 0 and float(np.mean(env > SPEECH_RMS)) >= SPEECH_SHARE


def _patch(grey: np.ndarray, x0: float, y0: float, x1: float, y1: float) -> np.ndarray | None:
    """The region resampled to :data:`PATCH` (nearest pixel: the motion measure needs no more)."""
    h, w = grey.shape
    x0, x1 = max(0.0, x0), min(float(w), x1)
    y0, y1 = max(0.0, y0), min(float(h), y1)
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    rows = np.clip((y0 + (np.arange(PATCH[0]) + 0.5) * (y1 - y0) / PATCH[0]).astype(int), 0, h - 1)
    cols = np.clip((x0 + (np.arange(PATCH[1]) + 0.5) * (x1 - x0) / PATCH[1]).astype(int), 0, w - 1)
    return grey[np.ix_(rows, cols)]


def _mouth(box: np.ndarray, marks: np.ndarray) -> tuple:
    """The mouth region (x0, y0, x1, y1) of one face."""
    x1, y1, x2, y2 = box
    fw, fh = x2 - x1, y2 - y1
    left, right = marks[3], marks[4]
    if np.isfinite(marks).all() and right[0] > left[0]:
        cx, cy = (left + right) / 2
        mw = right[0] - left[0]
        return (cx - 0.8 * mw, cy - 0.45 * mw, cx + 0.8 * mw, cy + 0.75 * mw)
    return (x1 + 0.25 * fw, y1 + 0.62 * fh, x2 - 0.25 * fw, y1 + 0.95 * fh)


def mouth_patches(grey: np.ndarray, boxes: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """The grey mouth patch of each frame, (T, rows * columns); NaN where the mouth is outside.

    ``grey``: (T, H, W) float frames; ``boxes`` (T, 4) and ``marks`` (T, 5, 2) in their pixels.
    """
    out = np.full((len(grey), PATCH[0] * PATCH[1]), np.nan)
    for t in range(len(grey)):
        patch = _patch(grey[t], *_mouth(boxes[t], marks[t]))
        if patch is not None:
            out[t] = patch.ravel()
    return out


def synchrony(patches: np.ndarray, env: np.ndarray) -> float:
    """The mean squared correlation of ``env`` with the best-following quarter of the pixels."""
    ok = np.isfinite(patches).all(axis=1)
    if ok.sum() < 4:
        return 0.0
    p = patches[ok] - patches[ok].mean(axis=0)
    e = env[ok] - env[ok].mean()
    denom = np.sqrt((p * p).sum(axis=0) * (e * e).sum())
    rho = np.where(denom > 1e-9, (p * e[:, None]).sum(axis=0) / np.maximum(denom, 1e-9), 0.0)
    r2 = np.sort(rho**2)[::-1]
    return float(r2[: max(1, len(r2) // 4)].mean())


def sync_scores(tracks: list[Track], frame_times: np.ndarray, frames: np.ndarray, times: np.ndarray,
                env: np.ndarray, scale: tuple[float, float]) -> list[float]:
    """Each track's :func:`synchrony` with the speech envelope ``env``.

    ``frame_times``: the segment's sampled frames (where the tracks were seen); ``frames`` (T, H, W, 3)
    uint8 sampled densely at ``times``; ``env`` the envelope at those times; ``scale``: (x, y)
    factors from the tracks' pixels to the dense frames' pixels.
    """
    grey = frames.astype(np.float32).mean(axis=3)
    sx, sy = scale
    scores = []
    for track in tracks:
        boxes, marks = track.at_times(times, frame_times)
        scores.append(synchrony(mouth_patches(grey, boxes * [sx, sy, sx, sy], marks * [sx, sy]), env))
    return scores


def speaker_of(scores: list[float]) -> int | None:
    """The index of the speaking track, or None when no track moves with the speech."""
    if not scores:
        return None
    best = int(np.argmax(scores))
    return best if scores[best] >= MIN_SYNC else None
