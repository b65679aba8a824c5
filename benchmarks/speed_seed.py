"""The seed's way of getting from videos to emotions, rebuilt for timing (our code, its data path).

The seed (github.com/MultimodalAffectiveComputing/FV2ES, ``V2EM/src``) reads utterance folders
made beforehand: every frame of the utterance as ``image_<k>.jpg`` and its audio as a wav. Its
dataset keeps one JPEG per ``img_interval`` ms (step ``int(interval / 1000 * fps)`` over the frame
numbers), loads each with PIL as float32, builds the mel spectrogram of the wav (torchaudio,
``win_length=400``) cut into 32-frame pieces, and the model runs MTCNN (facenet-pytorch,
``image_size=48, margin=2, post_process=False``) on the full-resolution frames, a centre crop where
no face is found, then the network. Here that is, per utterance:

  extract  PyAV decodes every frame of each clip, PIL writes the frames inside each utterance as
           JPEGs into the utterance's folder, and its audio (16 kHz mono) as a wav;
  load     the sampled JPEGs read back, the wav read and turned into spectrogram pieces;
  faces    MTCNN on each full-resolution frame, one at a time;
  model    the training-form network (multi-branch RepVGG, not folded) on that one utterance.

torch runs with its default threads (one per core).
"""

from __future__ import annotations

import time
import wave
from pathlib import Path

import av
import numpy as np
import torch
from PIL import Image

SEED_RATE = 16000  # the seed's wavs


class SeedWay:
    """The seed's data path around ``model`` (training form, eval mode) and ``collate``."""

    def __init__(self, model: torch.nn.Module, collate, interval_ms: int = 500):
        import torchaudio
        from facenet_pytorch import MTCNN

        self.model, self.collate, self.interval_ms = model, collate, interval_ms
        self.mtcnn = MTCNN(image_size=48, margin=2, post_process=False).eval()
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate=SEED_RATE, win_length=400)

    def run(self, clips, folder: Path) -> dict[str, float]:
        """Every utterance of ``clips`` through the seed's path; seconds per stage."""
        seconds = dict.fromkeys(("extract", "load", "faces", "model"), 0.0)
        start = time.perf_counter()
        utterances = []
        for i, clip in enumerate(clips):
            utterances += self.extract(clip, folder / f"clip_{i:03d}")
        seconds["extract"] = time.perf_counter() - start
        for path, text, fps in utterances:
            for stage, value in self.utterance(path, text, fps).items():
                seconds[stage] += value
        return seconds

    def extract(self, clip, folder: Path) -> list[tuple[Path, str, float]]:
        """Write each utterance's frames (JPEG) and audio (wav); (folder, text, fps) per utterance."""
        spans = [(float(s), float(e)) for s, e, _ in clip.utterances]
        dirs = [folder / f"utt_{k:03d}" for k in range(len(spans))]
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
        counts = [0] * len(spans)
        with av.open(clip.path) as container:
            vs = container.streams.video[0]
            fps = float(vs.average_rate)
            for frame in container.decode(vs):
                t = float(frame.time)
                hits = [k for k, (s, e) in enumerate(spans) if s <= t < e]
                if not hits:
                    continue
                image = frame.to_image()
                for k in hits:
                    image.save(dirs[k] / f"image_{counts[k]}.jpg")
                    counts[k] += 1
        with av.open(clip.path) as container:
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SEED_RATE)
            chunks = []
            for frame in container.decode(container.streams.audio[0]):
                chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        for (s, e), d in zip(spans, dirs):
            with wave.open(str(d / "audio.wav"), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(SEED_RATE)
                w.writeframes(audio[round(s * SEED_RATE) : round(e * SEED_RATE)].tobytes())
        return [(d, text, fps) for d, (_, _, text) in zip(dirs, clip.utterances)]

    def utterance(self, folder: Path, text: str, fps: float) -> dict[str, float]:
        """One utterance folder -> probabilities, timed by stage."""
        from fv2es.media.faces import centre_crop

        t0 = time.perf_counter()
        count = len(list(folder.glob("image_*.jpg")))
        step = max(1, int(self.interval_ms / 1000 * fps))
        images = [torch.from_numpy(np.asarray(Image.open(folder / f"image_{i}.jpg").convert("RGB"), np.float32))
                  for i in range(0, count, step)]
        with wave.open(str(folder / "audio.wav")) as w:
            samples = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768.0
        with torch.no_grad():
            spec = self.mel(torch.from_numpy(samples)[None]).unsqueeze(0)  # (1, 1, 128, T)
        pieces = [spec[..., i : i + 32] for i in range(0, spec.shape[-1], 32)]
        pieces[-1] = torch.nn.functional.pad(pieces[-1], (0, 32 - pieces[-1].shape[-1]))
        pieces = torch.cat(pieces).reshape(-1, 4, 32, 32).numpy()
        t1 = time.perf_counter()
        crops = []
        with torch.no_grad():
            for image in images:
                face = self.mtcnn(image)  # one full-resolution frame at a time, as the seed's model did
                if face is None:
                    crops.append(centre_crop(image.round().to(torch.uint8)))
                else:
                    crops.append(face.permute(1, 2, 0).clamp(0, 255).round().to(torch.uint8).numpy())
        t2 = time.perf_counter()
        faces = np.stack(crops) if crops else np.zeros((0, 48, 48, 3), np.uint8)
        with torch.no_grad():
            self.model(self.collate([{"text": text, "faces": faces, "pieces": pieces}]))
        t3 = time.perf_counter()
        return {"load": t1 - t0, "faces": t2 - t1, "model": t3 - t2}
