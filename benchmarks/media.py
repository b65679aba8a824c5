"""Media front-end benchmark: decode + face crops (+ spectrogram pieces) per video-second.

Generates 10 s, 30 fps clips (H.264 + AAC, 44.1 kHz stereo) at 720p and 1080p showing a real
photograph of a face on a textured background that drifts each frame, then times, per clip:
  decode       PyAV over fsspec: frames every img_interval ms scaled to max_side, 16 kHz mono audio
  faces        batched MTCNN on the kept frames (detect_max_side), 48x48 crops
  spectrogram  mel spectrogram pieces (4, 32, 32)
and prints ms per video-second and each stage's share; the best of --repeats runs.

    python benchmarks/media.py            # 720p and 1080p, default config
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from skimage import data, transform

from fv2es.media.decode import DecodeConfig, decode
from fv2es.media.encode import write_clip
from fv2es.media.faces import FaceConfig, FaceCropper
from fv2es.media.spectrogram import SpectrogramPieces


def make_clip(path: Path, width: int, height: int, seconds: float, fps: int) -> None:
    rng = np.random.default_rng(0)
    face = transform.resize(data.astronaut()[0:300, 100:350], (height // 2, height * 250 // 600),
                            anti_aliasing=True, preserve_range=True)
    scene = transform.resize(data.coffee(), (height, width + 64), preserve_range=True)
    frames = np.empty((int(seconds * fps), height, width, 3), np.uint8)
    for i in range(len(frames)):
        shift = (i * 2) % 64  # the background pans, so the encoder has real motion to code
        frame = scene[:, shift:shift + width].copy()
        y, x = height // 4, width // 2 - face.shape[1] // 2 + int(10 * np.sin(i / 10))
        frame[y:y + face.shape[0], x:x + face.shape[1]] = face
        frames[i] = np.clip(frame + rng.normal(0, 3, frame.shape), 0, 255)
    t = np.arange(int(seconds * 44100)) / 44100
    audio = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.3 * np.sin(2 * np.pi * 330 * t)]).astype(np.float32)
    write_clip(str(path), frames, fps, audio=audio, sample_rate=44100)


def best_of(fn, repeats: int):
    best, out = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-side", type=int, default=DecodeConfig.max_side)
    parser.add_argument("--detect-max-side", type=int, default=FaceConfig.detect_max_side)
    args = parser.parse_args(argv)

    decode_cfg = DecodeConfig(max_side=args.max_side)
    cropper = FaceCropper(FaceConfig(detect_max_side=args.detect_max_side))
    spectrogram = SpectrogramPieces()
    print(f"{args.seconds:g} s clips at {args.fps} fps; frames every {decode_cfg.img_interval_ms} ms, "
          f"decoded to max side {decode_cfg.max_side}, MTCNN at max side {args.detect_max_side}; best of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (w, h) in {"720p": (1280, 720), "1080p": (1920, 1080)}.items():
            path = Path(tmp) / f"{name}.mp4"
            make_clip(path, w, h, args.seconds, args.fps)
            t_decode, (row,) = best_of(lambda p=path: decode(str(p), config=decode_cfg), args.repeats)
            assert row.status == "ok", row.error
            t_faces, crops = best_of(lambda r=row: cropper(r.frames), args.repeats)
            t_spec, pieces = best_of(lambda r=row: spectrogram(r.audio), args.repeats)
            total = t_decode + t_faces + t_spec
            per_s = 1000 / args.seconds
            mbit = path.stat().st_size * 8 / args.seconds / 1e6
            print(f"{name:>6} ({mbit:.1f} Mbit/s): {len(row.frames)} frames, {crops.face_found.sum()} faces, "
                  f"{len(pieces)} pieces | per video-second: decode {t_decode * per_s:.1f} ms, "
                  f"faces {t_faces * per_s:.1f} ms, spectrogram {t_spec * per_s:.1f} ms, "
                  f"total {total * per_s:.1f} ms | share: decode {t_decode / total:.0%}, "
                  f"faces {t_faces / total:.0%}, spectrogram {t_spec / total:.0%} | "
                  f"{args.seconds / total:.0f}x real time")


if __name__ == "__main__":
    main()
