"""Test media with several people: real face photographs side by side, taking turns to speak.

The faces are skimage's astronaut (Eileen Collins) and matplotlib's Grace Hopper (a third person is
the astronaut mirrored); the voices are three espeak-ng voices (data/voices, make_voices.sh), the
third one made deeper (played 0.8 times as fast: lower pitch and formants, as from a longer vocal
tract): espeak-ng's two male variants are one voice to a speaker-embedding model. Each
speaker's mouth opens with the envelope of their own voice (a dark ellipse between the mouth
corners MTCNN finds on the photograph), the listeners' mouths stay shut, and every head sways a
pixel or two, out of step with the others, so that no face is perfectly still.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fv2es.media.encode import write_clip

VOICES = Path(__file__).parent / "data" / "voices"
RATE = 16000
TILE = 240  # each person's square of the frame, pixels
FPS = 25


DEEPER = {2: 0.8}  # voice -> playback rate (below 1: deeper and slower)


def voice(v: int, s: int, raw: bool = False) -> np.ndarray:
    """Sentence ``s`` (0 or 1) of voice ``v`` (0, 1, 2) as float32 at 16 kHz (``raw``: as recorded,
    without :data:`DEEPER`)."""
    with wave.open(str(VOICES / f"v{v}_{s}.wav")) as w:
        audio = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
    rate = 1.0 if raw else DEEPER.get(v, 1.0)
    if rate == 1.0:
        return audio
    n = int(len(audio) / rate)
    return np.interp(np.arange(n) * rate, np.arange(len(audio)), audio).astype(np.float32)


def _photos() -> list[np.ndarray]:
    from matplotlib import cbook
    from PIL import Image
    from skimage import data

    astronaut = data.astronaut()[20:230, 120:330]  # the face with hair and chin, 210 px square
    with cbook.get_sample_data("grace_hopper.jpg") as f:
        hopper = np.asarray(Image.open(f).convert("RGB"))[70:370, 115:415]
    tiles = [np.asarray(Image.fromarray(p).resize((TILE, TILE), Image.BILINEAR)) for p in (astronaut, hopper)]
    return [*tiles, tiles[0][:, ::-1].copy()]


def _mouths(tiles: list[np.ndarray]) -> list[tuple[float, float, float]]:
    """(centre x, centre y, width) of each photograph's mouth, from MTCNN's mouth corners."""
    from fv2es.media.faces import FaceCropper

    cropper = FaceCropper()
    out = []
    for tile in tiles:
        (cand,) = cropper.candidates(tile[None])
        left, right = cand.landmarks[int(np.argmax(cand.probs)), 3:5]
        out.append(((left[0] + right[0]) / 2, (left[1] + right[1]) / 2, right[0] - left[0]))
    return out


def _openness(audio: np.ndarray, frames: int) -> np.ndarray:
    """How far open a mouth speaking ``audio`` is in each video frame: its RMS, 0..1."""
    hop = RATE // FPS
    rms = np.array([np.sqrt(np.mean(audio[i * hop:(i + 1) * hop] ** 2)) if i * hop < len(audio) else 0.0
                    for i in range(frames)])
    peak = np.percentile(rms[rms > 0], 90) if (rms > 0).any() else 1.0
    return np.clip(rms / peak, 0, 1)


@dataclass
class Conversation:
    """A generated clip: where it is, and who speaks when (the truth)."""

    path: Path
    turns: list[tuple[float, float, int]]  # (start s, end s, face) of each turn; face 0 is leftmost
    faces: int
    duration_s: float


def conversation(path: Path, order: list[int], faces: int, gap_s: float = 0.6, silent: bool = False,
                 seed: int = 0, fidget: float = 0.0) -> Conversation:
    """A clip of ``faces`` people side by side; person ``order[k]`` speaks turn ``k`` (their next
    sentence), with ``gap_s`` of silence between turns. ``silent``: the mouths move, the audio is
    faint noise (nobody heard). ``fidget``: the listeners' mouths open too, this far at most, at
    random (chewing, smiling, mouthing along), out of step with the sound."""
    rng = np.random.default_rng(seed)
    tiles = _photos()[:faces]
    mouths = _mouths(tiles)
    said = [0] * faces
    pieces, turns, t = [np.zeros(int(0.4 * RATE), np.float32)], [], 0.4
    tracks = [[] for _ in range(faces)]  # each person's own audio, for their mouth
    for face in order:
        speech = voice(face, said[face] % 2)
        said[face] += 1
        turns.append((t, t + len(speech) / RATE, face))
        for k in range(faces):
            tracks[k].append(speech if k == face else np.zeros_like(speech))
            tracks[k].append(np.zeros(int(gap_s * RATE), np.float32))
        pieces += [speech, np.zeros(int(gap_s * RATE), np.float32)]
        t += len(speech) / RATE + gap_s
    audio = np.concatenate(pieces)
    n = int(len(audio) / RATE * FPS)
    frames = np.empty((n, TILE, TILE * faces, 3), np.uint8)
    phase = rng.uniform(0, 2 * np.pi, faces)
    open_by = [_openness(np.concatenate([np.zeros(int(0.4 * RATE), np.float32), *tr]), n) for tr in tracks]
    if fidget:
        for k in range(faces):
            wobble = np.convolve(rng.random(n + 4), np.ones(5) / 5, "valid")[:n]  # ~5 Hz random motion
            open_by[k] = np.maximum(open_by[k], fidget * wobble)
    yy, xx = np.mgrid[:TILE, :TILE]
    for i in range(n):
        for k, (tile, (cx, cy, mw)) in enumerate(zip(tiles, mouths)):
            img = tile.astype(np.float32)
            o = open_by[k][i]
            if o > 0.05:
                inside = ((xx - cx) / (0.42 * mw)) ** 2 + ((yy - cy - 0.08 * mw) / (0.38 * mw * o)) ** 2 <= 1
                img[inside] = (55, 20, 25)
            dx = int(round(1.5 * np.sin(2 * np.pi * 0.4 * i / FPS + phase[k])))
            frames[i, :, k * TILE:(k + 1) * TILE] = np.roll(img, dx, axis=1).clip(0, 255).astype(np.uint8)
    if silent:
        audio = (rng.standard_normal(len(audio)) * 0.002).astype(np.float32)
    write_clip(str(path), frames, FPS, audio, RATE)
    return Conversation(path, turns, faces, len(audio) / RATE)


def turns_audio(order: list[int], gap_s: float = 0.6, lead_s: float = 0.4, raw: bool = False):
    """Only the sound of a conversation: voice ``order[k]`` says its next sentence in turn ``k``,
    ``gap_s`` of silence between turns; (audio at 16 kHz, [(start s, end s, voice), ...])."""
    said: dict[int, int] = {}
    pieces, turns, t = [np.zeros(int(lead_s * RATE), np.float32)], [], lead_s
    for v in order:
        speech = voice(v, said.get(v, 0) % 2, raw)
        said[v] = said.get(v, 0) + 1
        turns.append((t, t + len(speech) / RATE, v))
        pieces += [speech, np.zeros(int(gap_s * RATE), np.float32)]
        t += len(speech) / RATE + gap_s
    return np.concatenate(pieces), turns
