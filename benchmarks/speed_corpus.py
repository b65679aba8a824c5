"""The speed benchmark's corpus: phone-like talking-head clips with speech, half with captions.

Each clip is 30 fps H.264 + 48 kHz stereo AAC (``fv2es.media.encode.write_clip``): a real face
photograph (``skimage.data.astronaut()``, the one the demo corpus uses) over a panning textured
background with per-frame sensor noise sized so the video stream comes out near phone bitrates
(~4 Mbit/s), and English speech synthesised by espeak-ng, sentence by sentence with pauses. The
sentences are the clip's utterances (their spans are known exactly); clips 0 and 3 of every 4
get an ``.srt`` sidecar with one cue per utterance, the others none (scoring transcribes them).
Sizes alternate over the ``sizes`` given (720p, 1080p by default).

Without espeak-ng the voice falls back to the demo corpus's harmonic tone (no words) and the
utterances are fixed 3 s spans; :func:`make_corpus` says so on stdout.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import subprocess
import tempfile
import wave
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

FPS = 30
AUDIO_RATE = 48000
PAUSE_S = 0.6  # between sentences: longer than the ASR's default 500 ms silence, so it cuts there too
# Uniform noise amplitude per frame height: tuned so x264's defaults give ~4 Mbit/s at 720p and 1080p.
NOISE = {720: 13, 1080: 10}
SENTENCES = (
    "Honestly, I did not expect the meeting to go this well today.",
    "We spent the whole afternoon arguing about the budget again.",
    "I am really happy with how the new kitchen turned out.",
    "Why does nobody ever listen to what I am trying to say?",
    "The train was late, so I missed the start of the concert.",
    "That is the best news I have heard in a very long time.",
    "I suppose it is fine, but I had hoped for something more.",
    "Please tell me you remembered to book the tickets for Friday.",
    "It has been a long week and I could really use some rest.",
    "They cancelled the project without even asking us first.",
)
VERSION = 1  # bump when the generated content changes, so cached corpora are regenerated


@dataclass
class Clip:
    """One generated clip and what is known about it."""

    path: str
    width: int
    height: int
    seconds: float
    mbit_s: float  # whole-file bitrate (video + audio)
    captions: bool  # an .srt sidecar sits beside it
    utterances: list  # [[start_s, end_s, text], ...]


def espeak_binary() -> str | None:
    """The espeak-ng executable, or None when it is not installed."""
    return shutil.which("espeak-ng")


def make_corpus(folder: str | Path, clips: int, seconds: float, sizes=((1280, 720), (1920, 1080)),
                seed: int = 0, log=print) -> tuple[list[Clip], str]:
    """Write ``clips`` clips into ``folder`` (reused when a previous call wrote the same corpus).

    Returns the clips and the voice used (``espeak-ng`` or ``demo-tone``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    espeak = espeak_binary()
    voice = "espeak-ng" if espeak else "demo-tone"
    key = {"version": VERSION, "clips": clips, "seconds": seconds, "sizes": [list(s) for s in sizes],
           "seed": seed, "voice": voice}
    index = folder / "corpus.json"
    if index.exists():
        saved = json.loads(index.read_text())
        if saved.get("key") == key and all(Path(c["path"]).exists() for c in saved["clips"]):
            return [Clip(**c) for c in saved["clips"]], voice
    if not espeak:
        log("espeak-ng is not installed (apt-get install espeak-ng): the clips get the demo corpus's "
            "harmonic tone instead of speech, so speech-to-text finds no words")
    # One process per core: x264 encodes on one thread (write_clip's reproducibility setting).
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(clips, os.cpu_count() or 1), mp_context=ctx) as pool:
        futures = [pool.submit(_make_clip, folder, i, seconds, sizes[i % len(sizes)], seed, bool(espeak))
                   for i in range(clips)]
        out = []
        for future in futures:
            clip = future.result()
            out.append(clip)
            log(f"  corpus: {Path(clip.path).name} {clip.width}x{clip.height} {clip.mbit_s} Mbit/s, "
                f"{len(clip.utterances)} utterances{', captions' if clip.captions else ''}")
    index.write_text(json.dumps({"key": key, "clips": [asdict(c) for c in out]}, indent=1))
    return out, voice


def _make_clip(folder: Path, i: int, seconds: float, size: tuple[int, int], seed: int, speech: bool) -> Clip:
    from fv2es.media.encode import write_clip

    width, height = size
    rng = np.random.default_rng([seed, i])
    audio, utterances = _speech(i, seconds, rng) if speech else _tone(i, seconds, rng)
    path = folder / f"clip_{i:03d}_{height}p.mp4"
    frames_file = folder / f"_frames_{i}.npy"  # the frames on disk: a 10 s 1080p clip is 1.9 GB
    frames = np.lib.format.open_memmap(frames_file, "w+", np.uint8, (round(seconds * FPS), height, width, 3))
    try:
        _fill_frames(frames, rng)
        write_clip(str(path), frames, FPS, audio=audio, sample_rate=AUDIO_RATE)
    finally:
        del frames
        frames_file.unlink(missing_ok=True)
    captions = i % 4 in (0, 3)
    srt = path.with_suffix(".srt")
    srt.unlink(missing_ok=True)
    if captions:
        srt.write_text(_srt(utterances), encoding="utf-8")
    return Clip(str(path), width, height, seconds, round(path.stat().st_size * 8 / seconds / 1e6, 2),
                captions, utterances)


def _fill_frames(frames: np.ndarray, rng: np.random.Generator) -> None:
    """A face photograph over a background panning 2 px per frame, with sensor-like noise."""
    from skimage import data

    from fv2es.media.democorpus import _resize

    n, height, width, _ = frames.shape
    amp = NOISE.get(height, 12)
    # Kept within [amp, 255 - amp], so adding the noise in uint8 (wrapping) arithmetic is exact.
    scene = np.clip(_resize(data.coffee(), width + 2 * n, height), amp, 255 - amp).astype(np.uint8)
    face_h = height * 2 // 3
    face = np.clip(_resize(data.astronaut()[20:260, 100:420], face_h * 4 // 3, face_h), amp, 255 - amp)
    face = face.astype(np.uint8)
    # A few noise frames reused in turn: drawing fresh noise for every 1080p frame is most of the cost.
    bank = [rng.integers(-amp, amp + 1, (height, width, 3)).astype(np.int8).view(np.uint8) for _ in range(7)]
    for i in range(n):
        frame = frames[i]
        frame[:] = scene[:, 2 * i : 2 * i + width]
        y = height // 6 + int(height / 90 * np.sin(i / 9))  # the speaker sways a little
        x = width // 2 - face.shape[1] // 2 + int(width / 64 * np.sin(i / 13))
        frame[y : y + face.shape[0], x : x + face.shape[1]] = face
        frame += bank[i % len(bank)]


def _speech(i: int, seconds: float, rng) -> tuple[np.ndarray, list]:
    """espeak-ng sentences with pauses, cut at ``seconds``; (stereo float32 at 48 kHz, utterances)."""
    import torch
    import torchaudio.functional as AF

    pieces, utterances, t = [], [], 0.0
    k = i
    while t < seconds - 0.5:
        text = SENTENCES[k % len(SENTENCES)]
        k += 1
        wav, rate = _espeak(text, voice=("en-us", "en")[i % 2], pitch=35 + 10 * (i % 4), speed=160 + 5 * (i % 3))
        wav = AF.resample(torch.from_numpy(wav), rate, AUDIO_RATE).numpy()
        end = min(seconds, t + len(wav) / AUDIO_RATE)
        utterances.append([round(t, 3), round(end, 3), text])
        pieces += [wav, np.zeros(round(PAUSE_S * AUDIO_RATE), np.float32)]
        t = end + PAUSE_S
    mono = np.concatenate(pieces)[: round(seconds * AUDIO_RATE)]
    mono = np.pad(mono, (0, round(seconds * AUDIO_RATE) - len(mono)))
    return _stereo(mono, rng), utterances


def _espeak(text: str, voice: str, pitch: int, speed: int) -> tuple[np.ndarray, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "s.wav")
        subprocess.run([espeak_binary(), "-v", voice, "-p", str(pitch), "-s", str(speed), "-w", out, text],
                       check=True, capture_output=True)
        with wave.open(out) as w:
            rate, data = w.getframerate(), w.readframes(w.getnframes())
    return np.frombuffer(data, np.int16).astype(np.float32) / 32768.0, rate


def _tone(i: int, seconds: float, rng) -> tuple[np.ndarray, list]:
    """The demo corpus's voice (a harmonic tone), with fixed 3 s utterances carrying the sentences."""
    import torch
    import torchaudio.functional as AF

    from fv2es.media.democorpus import SAMPLE_RATE, _voice

    wave16 = _voice(i % 6, round(seconds * SAMPLE_RATE), rng)
    mono = AF.resample(torch.from_numpy(wave16), SAMPLE_RATE, AUDIO_RATE).numpy()
    starts = np.arange(0.0, max(seconds - 0.5, 0.01), 3.0)
    utterances = [[float(s), float(min(seconds, s + 3.0)), SENTENCES[(i + j) % len(SENTENCES)]]
                  for j, s in enumerate(starts)]
    return _stereo(mono, rng), utterances


def _stereo(mono: np.ndarray, rng) -> np.ndarray:
    """Two channels of the voice with a little independent room noise, as a phone records."""
    noise = rng.normal(0, 0.003, (2, len(mono))).astype(np.float32)
    return np.clip(0.8 * mono[None] + noise, -1, 1).astype(np.float32)


def _srt(utterances: list) -> str:
    def stamp(t: float) -> str:
        ms = round(t * 1000)
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    return "".join(f"{k + 1}\n{stamp(s)} --> {stamp(e)}\n{text}\n\n" for k, (s, e, text) in enumerate(utterances))
