"""Scoring-job throughput: video-seconds scored per wall second, tiny vs paper model.

Generates a demo corpus (talking-face clips, H.264 + AAC), saves a freshly initialised tiny and
paper checkpoint (the paper model with the packaged MiniLM text encoder: ALBERT is not shipped
offline), and scores the corpus with each on the same local Ray cluster, end to end
(list -> decode -> faces -> model -> Parquet). Prints each run's throughput and the ratio.

    python benchmarks/score.py --videos 24 --seconds 4 --cpus 2
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

from fv2es.config import load_config
from fv2es.media.democorpus import make_demo_corpus
from fv2es.models import create_model, save_checkpoint
from fv2es.score.job import ScoreRequest, run_score


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip")
    parser.add_argument("--size", default="320x240")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    parser.add_argument("--models", default="fv2es_tiny,fv2es_paper")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. score.model_cpus=1")
    args = parser.parse_args(argv)

    import ray

    ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
    w, h = (int(v) for v in args.size.split("x"))
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus"
        make_demo_corpus(corpus, videos=args.videos, seed=0, seconds=(args.seconds, args.seconds), size=(w, h))
        print(f"{args.videos} clips of {args.seconds:g} s at {w}x{h}; local Ray with {args.cpus} CPUs")
        for preset in args.models.split(","):

            cfg = load_config(None, [f"model.preset={preset}", "model.text_model=minilm", *args.overrides])
            torch.manual_seed(0)
            ckpt = str(Path(tmp) / f"{preset}.safetensors")
            save_checkpoint(ckpt, create_model(cfg.model))
            out = Path(tmp) / f"out-{preset}"
            start = time.perf_counter()
            counts = run_score(cfg, ScoreRequest(str(corpus), str(out), ckpt), out=io.StringIO())
            wall = time.perf_counter() - start
            seg = pq.read_table(str(out / "segments")).to_pandas()
            seconds = float((seg.end - seg.start).sum())
            results[preset] = seconds / wall
            print(f"  {preset:<12} {counts['segments_ok']}/{counts['segments']} segments ok, {seconds:.0f} video-s "
                  f"in {wall:.1f} s wall = {seconds / wall:.2f} video-s/s | mean per segment: decode "
                  f"{seg.decode_ms.mean():.0f} ms, faces {seg.face_ms.mean():.0f} ms, model {seg.model_ms.mean():.0f} ms")
    if len(results) == 2:
        (a, ra), (b, rb) = results.items()
        print(f"ratio {a}/{b} throughput: {ra / rb:.2f}x")


if __name__ == "__main__":
    main()
