"""A small labelled video corpus for training and scoring tests on CPU.

Every clip is an H.264 + AAC mp4 in which *each modality alone* carries the class:

- **face**: the real photograph ``skimage.data.astronaut()``, cropped around her face (MTCNN finds
  it at 160x120), with a per-class colour tint, mirror flip and brightness, plus per-clip jitter
  (brightness, a slow drift of the framing, pixel noise);
- **voice**: a harmonic tone with a per-class pitch, amplitude-modulation rate and loudness, plus
  per-clip pitch jitter and noise;
- **text**: a sentence from shared templates and filler words with per-class emotion words.

Same ``seed`` and ``out_dir`` -> byte-identical manifests and identical decoded frames: each clip
draws from its own generator seeded by ``(seed, clip index)``.

The manifest (``manifest.jsonl`` and ``manifest.csv``, one row per clip) has the columns
``video_uri`` (the absolute local path of the clip, as a string, so the manifest can be read from
any working directory), ``start`` (0.0), ``end`` (the clip duration, s), ``text``, ``label`` (the
emotion name) and ``split`` (``train``/``valid``/``test``, seeded 70/10/20 per class). Each clip
also has a ``.txt`` transcript beside it.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fv2es.data.splits import fill_empty_splits
from fv2es.emotions import IEMOCAP_EMOTIONS
from fv2es.media.encode import write_clip

SAMPLE_RATE = 16000
COLUMNS = ("id", "video_uri", "start", "end", "text", "label", "split")
SPLITS = (("train", 0.7), ("valid", 0.1), ("test", 0.2))

# Region of astronaut() (rows, cols) around the face with a 4:3 shape; scaled to 160x120 the
# face is ~45 px wide, comfortably above MTCNN's 20 px minimum.
_FACE_REGION = (slice(20, 260), slice(100, 420))
_JITTER_PX = 6  # the framing drifts by up to this many pixels either way

# Per-class face style by class position: RGB gains (None = greyscale), mirror flip, brightness.
_VISUAL = [
    ((1.35, 0.75, 0.70), False, 1.00),  # red
    ((1.25, 1.20, 0.55), True, 1.10),  # yellow, mirrored
    ((0.80, 1.20, 0.80), False, 0.95),  # green
    ((1.00, 1.00, 1.00), True, 1.10),  # natural colour, mirrored
    (None, False, 1.00),  # greyscale
    ((0.70, 0.85, 1.35), True, 0.80),  # blue, mirrored, dark
]
# Per-class voice by class position: fundamental (Hz), amplitude-modulation rate (Hz), loudness.
_VOICE = [
    (220.0, 7.0, 0.50),
    (330.0, 5.0, 0.45),
    (175.0, 3.0, 0.35),
    (262.0, 4.0, 0.40),
    (140.0, 0.0, 0.30),
    (110.0, 1.5, 0.20),
]

_WORDS = {
    "ang": ("angry", "furious", "outraged", "livid", "hostile", "enraged"),
    "exc": ("excited", "thrilled", "eager", "ecstatic", "elated", "energized"),
    "fru": ("frustrated", "annoyed", "stuck", "exasperated", "thwarted", "fed up"),
    "hap": ("happy", "glad", "cheerful", "pleased", "content", "joyful"),
    "neu": ("okay", "fine", "normal", "ordinary", "usual", "plain"),
    "sad": ("sad", "unhappy", "gloomy", "miserable", "sorrowful", "heartbroken"),
    # CMU-MOSEI's names, so a corpus with those labels also reads naturally.
    "anger": ("angry", "furious", "outraged", "livid", "hostile", "enraged"),
    "disgust": ("disgusted", "revolted", "repulsed", "sickened", "grossed out", "appalled"),
    "fear": ("afraid", "scared", "terrified", "frightened", "anxious", "nervous"),
    "happy": ("happy", "glad", "cheerful", "pleased", "content", "joyful"),
    "surprise": ("surprised", "amazed", "astonished", "shocked", "stunned", "startled"),
}
_TEMPLATES = (
    "i feel {a} about this today",
    "honestly we were so {a} and {b}",
    "it was just {a}, really {a2}",
    "you know i am {a} and quite {b} now",
    "well that made me {a}",
    "so {a}, i mean {b}, about the whole thing",
)
_FILLERS = ("um", "well", "yeah", "like", "right so", "you see")


def make_demo_corpus(
    out_dir: str | Path,
    videos: int = 60,
    seed: int = 0,
    *,
    emotions: tuple[str, ...] = IEMOCAP_EMOTIONS,
    seconds: tuple[float, float] = (2.0, 4.0),
    size: tuple[int, int] = (160, 120),
    fps: int = 15,
) -> Path:
    """Write ``videos`` labelled clips plus manifests into ``out_dir``; return the JSONL manifest path.

    Args:
        out_dir: local directory (created if missing); existing clips of the same names are replaced.
        videos: number of clips; classes are balanced (counts differ by at most one).
        seed: everything (labels, splits, jitter, words) derives from it.
        emotions: class names, in order; any names work (words for unknown names are the name).
        seconds: (min, max) clip duration; each clip gets a whole number of frames in this range.
        size: (width, height) in pixels, both even (H.264 yuv420p).
        fps: frame rate of the clips.
    """
    width, height = size
    if width % 2 or height % 2:
        raise ValueError(f"size must be even, got {size}")
    if not emotions:
        raise ValueError("emotions must not be empty")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    labels = np.resize(np.arange(len(emotions)), videos)
    rng.shuffle(labels)
    splits = _stratified_splits(labels, rng)
    base = _base_picture(width, height)

    rows = []
    for i, k in enumerate(labels.tolist()):
        clip_rng = np.random.default_rng([seed, i])
        n_frames = max(1, round(clip_rng.uniform(*seconds) * fps))
        duration = n_frames / fps
        frames = _frames(base, k, n_frames, width, height, clip_rng)
        audio = _voice(k, round(duration * SAMPLE_RATE), clip_rng)
        text = _sentence(emotions[k], clip_rng)
        path = out / f"clip_{i:05d}.mp4"
        write_clip(str(path), frames, fps, audio, SAMPLE_RATE)
        path.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
        rows.append(
            {
                "id": path.stem,
                "video_uri": str(path),
                "start": 0.0,
                "end": round(duration, 6),
                "text": text,
                "label": emotions[k],
                "split": splits[i],
            }
        )

    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with open(out / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def _stratified_splits(labels: np.ndarray, rng: np.random.Generator) -> list[str]:
    """70/10/20 train/valid/test within each class, members chosen at random."""
    splits = [""] * len(labels)
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        rng.shuffle(members)
        n = len(members)
        n_train = round(n * SPLITS[0][1])
        n_valid = min(n - n_train, round(n * SPLITS[1][1]))
        # Every split gets a clip of each class that has three (5 clips round to 4/0/1).
        n_train, n_valid, _ = fill_empty_splits((n_train, n_valid, n - n_train - n_valid), [f for _, f in SPLITS])
        for j, idx in enumerate(members.tolist()):
            splits[idx] = "train" if j < n_train else "valid" if j < n_train + n_valid else "test"
    return splits


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x[0].permute(1, 2, 0).numpy()


def _base_picture(width: int, height: int) -> np.ndarray:
    """The face region at the clip size plus a jitter border, float32 0..255."""
    from skimage import data  # imported here: only the generator needs the photograph

    region = data.astronaut()[_FACE_REGION]
    return _resize(region, width + 2 * _JITTER_PX, height + 2 * _JITTER_PX).astype(np.float32)


def _style(k: int) -> tuple[tuple[float, float, float] | None, bool, float]:
    if k < len(_VISUAL):
        return _VISUAL[k]
    # Beyond the six designed styles: tints around the colour wheel (a non-integer step, so
    # hues do not repeat), alternating flips.
    hue = 2 * math.pi * k / 7.3
    gains = tuple(1.0 + 0.4 * math.cos(hue + c * 2 * math.pi / 3) for c in range(3))
    return gains, bool(k % 2), 1.0


def _frames(base, k, n_frames, width, height, rng) -> np.ndarray:
    gains, flip, brightness = _style(k)
    picture = base[:, ::-1] if flip else base
    if gains is None:
        picture = np.repeat(picture @ np.array([[0.299], [0.587], [0.114]], np.float32), 3, axis=2)
    else:
        picture = picture * np.asarray(gains, np.float32)
    picture = picture * brightness * rng.uniform(0.92, 1.08)
    # A slow drift of the framing, as a speaker moves: a random ellipse within the border.
    phase, speed = rng.uniform(0, 2 * math.pi, 2), rng.uniform(0.5, 1.5)
    t = np.arange(n_frames) / max(n_frames, 1) * 2 * math.pi * speed
    ox = np.rint(_JITTER_PX * (1 + np.sin(t + phase[0]))).astype(int)
    oy = np.rint(_JITTER_PX * (1 + np.cos(t + phase[1]))).astype(int)
    # Sensor-like noise; uniform integers are ~6x cheaper to draw than Gaussian ones.
    noise = rng.integers(-5, 6, (n_frames, height, width, 3), dtype=np.int8)
    frames = np.empty((n_frames, height, width, 3), np.uint8)
    for f in range(n_frames):
        window = picture[oy[f] : oy[f] + height, ox[f] : ox[f] + width]
        frames[f] = np.clip(window + noise[f], 0, 255)
    return frames


def _voice(k: int, n_samples: int, rng) -> np.ndarray:
    if k < len(_VOICE):
        f0, am_rate, loudness = _VOICE[k]
    else:
        f0, am_rate, loudness = 100.0 * 1.2**k, 1.0 + k, 0.35
    f0 *= rng.uniform(0.97, 1.03)
    t = np.arange(n_samples) / SAMPLE_RATE
    # Five harmonics falling off as 1/h: a buzzy, voice-like timbre with a clear pitch.
    tone = sum(np.sin(2 * np.pi * h * f0 * t) / h for h in range(1, 6)) / 2.3
    envelope = 1.0 - 0.8 * (0.5 + 0.5 * np.sin(2 * np.pi * am_rate * t + rng.uniform(0, 2 * np.pi)))
    if am_rate == 0:
        envelope = np.full_like(t, 0.6)
    wave = loudness * envelope * tone + rng.normal(0, 0.01, n_samples)
    return np.clip(wave, -1, 1).astype(np.float32)


def _sentence(label: str, rng) -> str:
    words = _WORDS.get(label, (label,))
    a, a2, b = (words[j] for j in rng.choice(len(words), 3, replace=len(words) < 3))
    text = _TEMPLATES[rng.integers(len(_TEMPLATES))].format(a=a, a2=a2, b=b)
    if rng.random() < 0.5:
        text = f"{_FILLERS[rng.integers(len(_FILLERS))]} {text}"
    return text
