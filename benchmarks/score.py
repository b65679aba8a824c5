"""Scoring-job throughput: video-seconds scored per wall second, tiny vs paper model; and, with
``--speech``, what speech-to-text costs.

Default: generates a demo corpus (talking-face clips, H.264 + AAC, with caption files), saves a
freshly initialised tiny and paper checkpoint (the paper model with the packaged MiniLM text
encoder: ALBERT is not shipped offline), and scores the corpus with each on the same local Ray
cluster, end to end (list -> decode -> spectrogram -> faces -> model -> Parquet). Prints each run's
throughput and the ratio.

``--speech``: the clips speak real sentences (the espeak-ng WAVs of ``tests/asr/data``) and have
no captions, so in ``asr.mode=auto`` every video is transcribed and cut at its utterances. Scores
them with the tiny model twice, ``asr.mode=never`` and ``asr.mode=auto``, and prints the wall time
per video-second of each, the stage times per video-second, and ASR's share of them.

    python benchmarks/score.py --videos 24 --seconds 4 --cpus 2
    python benchmarks/score.py --speech --videos 8 --cpus 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from fv2es.config import load_config
from fv2es.media.decode import DecodeConfig, decode
from fv2es.media.democorpus import make_demo_corpus
from fv2es.media.encode import write_clip
from fv2es.models import create_model, save_checkpoint
from fv2es.score.job import ScoreRequest, run_score

SPEECH = Path(__file__).resolve().parents[1] / "tests" / "asr" / "data"
STAGES = ("decode_ms", "asr_ms", "face_ms", "model_ms")


def speech_corpus(root: Path, videos: int, size: tuple[int, int]) -> None:
    """``videos`` uncaptioned clips of the demo face speaking one.wav / two.wav in turn."""
    root.mkdir(parents=True)
    for i in range(videos):
        with wave.open(str(SPEECH / ("one.wav", "two.wav")[i % 2])) as w:
            audio = np.frombuffer(w.readframes(w.getnframes()), np.int16).astype(np.float32) / 32768
        seconds = len(audio) / 16000
        with tempfile.TemporaryDirectory() as tmp:
            make_demo_corpus(tmp, videos=1, seed=i, seconds=(seconds, seconds), size=size, fps=15)
            (row,) = decode(str(Path(tmp) / "clip_00000.mp4"), None, DecodeConfig(img_interval_ms=66))
        write_clip(str(root / f"speech_{i:03d}.mp4"), row.frames, 15, audio, 16000)


def score(cfg, corpus: Path, ckpt: str, out: Path):
    start = time.perf_counter()
    counts = run_score(cfg, ScoreRequest(str(corpus), str(out), ckpt))
    wall = time.perf_counter() - start
    return counts, wall, pq.read_table(str(out / "segments")).to_pandas()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip (not with --speech)")
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--models", default="fv2es_tiny,fv2es_paper")
    parser.add_argument("--speech", action="store_true", help="measure speech-to-text's cost instead")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. resources.model_cpus=1")
    args = parser.parse_args(argv)

    import ray

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    w, h = (int(v) for v in args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        if args.speech:
            _speech(args, Path(tmp), (w, h))
            return
        results = {}
        corpus = Path(tmp) / "corpus"
        make_demo_corpus(corpus, videos=args.videos, seed=0, seconds=(args.seconds, args.seconds), size=(w, h))
        print(f"{args.videos} clips of {args.seconds:g} s at {w}x{h}; local Ray with {args.cpus} CPUs")
        for preset in args.models.split(","):
            cfg = load_config(None, [f"model.preset={preset}", "model.text_model=minilm", *args.overrides])
            torch.manual_seed(0)
            ckpt = str(Path(tmp) / f"{preset}.safetensors")
            save_checkpoint(ckpt, create_model(cfg.model))
            counts, wall, seg = score(cfg, corpus, ckpt, Path(tmp) / f"out-{preset}")
            seconds = float((seg.end - seg.start).sum())
            results[preset] = seconds / wall
            print(f"  {preset:<12} {counts['segments_ok']}/{counts['segments']} segments ok, {seconds:.0f} video-s "
                  f"in {wall:.1f} s wall = {seconds / wall:.2f} video-s/s | mean per segment: decode "
                  f"{seg.decode_ms.mean():.0f} ms, faces {seg.face_ms.mean():.0f} ms, model {seg.model_ms.mean():.0f} ms")
    if len(results) == 2:
        (a, ra), (b, rb) = results.items()
        print(f"ratio {a}/{b} throughput: {ra / rb:.2f}x")


def _speech(args, tmp: Path, size: tuple[int, int]) -> None:
    corpus = tmp / "speech"
    speech_corpus(corpus, args.videos, size)
    cfg = load_config(None, ["model.preset=fv2es_tiny", "model.text_model=minilm", *args.overrides])
    torch.manual_seed(0)
    ckpt = str(tmp / "tiny.safetensors")
    save_checkpoint(ckpt, create_model(cfg.model))
    video_s = None
    print(f"{args.videos} uncaptioned speech clips at {size[0]}x{size[1]}; local Ray with {args.cpus} CPUs; "
          f"fv2es_tiny; asr {cfg.asr.model or 'tiny.en (packaged)'}, beam {cfg.asr.beam_size}")
    for mode in ("never", "auto"):
        run_cfg = load_config(None, ["model.preset=fv2es_tiny", "model.text_model=minilm", f"asr.mode={mode}",
                                     *args.overrides])
        counts, wall, seg = score(run_cfg, corpus, ckpt, tmp / f"out-{mode}")
        if video_s is None:
            video_s = float(seg.groupby("video_uri").video_duration_s.first().sum())
        per = {c: float(seg[c].sum()) / 1000 / video_s for c in STAGES}
        busy = sum(per.values())
        sources = seg.text_source.value_counts().to_dict()
        print(f"  asr.mode={mode:<6} {counts['segments']} segments {sources}: {wall:.1f} s wall for {video_s:.1f} "
              f"video-s = {wall / video_s:.2f} wall-s per video-s | stage seconds per video-s: "
              + ", ".join(f"{c.removesuffix('_ms')} {v:.3f}" for c, v in per.items())
              + f" | ASR share of stage time {per['asr_ms'] / busy:.0%}")


if __name__ == "__main__":
    main()
