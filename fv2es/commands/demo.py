"""``fv2es demo``: the whole system on the embedded default, end to end, in a few minutes on a CPU.

Generates the demo corpus, preprocesses it, trains the tiny model briefly on the local Ray,
scores the corpus with the trained checkpoint, writes the report, and prints a short table.
Each step is skipped when its output is already there, so a second run reuses the first.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fv2es.commands.common import add_config_arguments

DEMO_CONFIG = {
    "model": {"preset": "fv2es_tiny"},
    "train": {"lr": 1e-3, "batch_size": 8, "text_lr_factor": 10},
    "data": {"dataset": "manifest"},
    "decode": {"max_side": 320},
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the flags of ``fv2es demo``."""
    parser.add_argument("--workdir", default="fv2es-demo", help="where everything goes [fv2es-demo]")
    parser.add_argument("--videos", type=int, default=60, help="clips in the demo corpus [60]")
    parser.add_argument("--epochs", type=int, default=5, help="training epochs [5]")
    parser.add_argument("--rows", type=int, default=6, help="videos shown in the table [6]")
    parser.add_argument("--address", default=None, help="Ray address (default: $RAY_ADDRESS or a local Ray)")
    add_config_arguments(parser)


def _config(args):
    from fv2es.config import config_from_dict, deep_merge, load_config, parse_overrides

    if args.config:
        return load_config(args.config, args.overrides)
    data = deep_merge(DEMO_CONFIG, {"train": {"epochs": args.epochs, "early_stop": args.epochs}})
    return config_from_dict(deep_merge(data, parse_overrides(args.overrides)))


def _step(name: str) -> None:
    print(f"== {name}", flush=True)


def run(args: argparse.Namespace) -> int:
    """Run ``fv2es demo``; returns the exit code (2: a problem in what the user gave)."""
    from fv2es.report import check_writable_folder

    work = check_writable_folder(Path(args.workdir).resolve(), "workdir",
                                 "choose a --workdir you can write to")  # before any work
    from fv2es.media.democorpus import make_demo_corpus
    from fv2es.pipeline.dataset import init_ray
    from fv2es.preprocess import PreprocessRequest, run_preprocess
    from fv2es.report import write_report
    from fv2es.score.job import ScoreRequest, run_score
    from fv2es.shards import ExampleShards
    from fv2es.train.job import TrainRequest, run_train

    cfg = _config(args)
    corpus, shards, runs, scores = work / "corpus", work / "shards", work / "runs", work / "scores"
    best = runs / "demo" / "best.safetensors"
    init_ray(args.address)

    _step(f"1/5 demo corpus of {args.videos} clips -> {corpus}")
    if (corpus / "manifest.jsonl").exists():
        print("already there")
    else:
        make_demo_corpus(corpus, videos=args.videos, seed=0, seconds=(1.5, 2.5))
    _step(f"2/5 preprocess -> {shards}")
    if ExampleShards(str(shards)).exists():
        print("already there")
    else:
        run_preprocess(cfg, PreprocessRequest("manifest", str(corpus / "manifest.jsonl"), str(shards)))
    _step(f"3/5 train the tiny model -> {runs / 'demo'}")
    if best.exists():
        print("already there")
    else:
        run_train(cfg, TrainRequest(str(shards), str(runs), "demo"))
    _step(f"4/5 score the corpus -> {scores}")
    run_score(cfg, ScoreRequest(str(corpus), str(scores), str(best)))
    _step(f"5/5 report -> {work / 'report'}")
    report = write_report(work / "report", scores_uri=str(scores), run_uri=str(runs / "demo"), data_uri=str(shards),
                          labels_uri=str(corpus / "manifest.jsonl"))
    print_table(scores, corpus / "manifest.jsonl", args.rows)
    print(f"scores: {scores}  (segments/*.parquet, videos.parquet)")
    print(f"model:  {best}")
    print(f"report: {report}")
    print("note: the demo model learns the demo corpus's synthetic cues (a tint, a pitch, class words); "
          "it means nothing on real video (README: real models)")
    return 0


def print_table(scores: Path, manifest: Path, rows: int) -> None:
    """Per video: the true label (from the demo manifest), the dominant emotion, probabilities, faces."""
    import json

    from fv2es.emotions import emotions_of_columns, prob_column
    from fv2es.score.output import ScoreOutput

    labels = {json.loads(line)["video_uri"]: json.loads(line)["label"] for line in manifest.read_text().splitlines()}
    output = ScoreOutput(str(scores))
    videos = output.read_videos().to_pylist()
    segments = output.read_segments(["video_uri", "faces_found", "frames_sampled"]).to_pylist()
    faces, frames = {}, {}
    for s in segments:
        faces[s["video_uri"]] = faces.get(s["video_uri"], 0) + s["faces_found"]
        frames[s["video_uri"]] = frames.get(s["video_uri"], 0) + s["frames_sampled"]
    emotions = emotions_of_columns(videos[0])
    print(f"{'video':<16}{'label':<7}{'dominant':<10}" + "".join(f"{e:>6}" for e in emotions) + "  faces")
    for v in videos[:rows]:
        name = Path(v["video_uri"]).name
        probs = "".join(f"{v[prob_column(e)]:>6.2f}" if v["status"] == "ok" else f"{'-':>6}" for e in emotions)
        print(f"{name:<16}{labels.get(v['video_uri'], '?'):<7}{(v['dominant_emotion'] or v['status']):<10}{probs}"
              f"  {faces.get(v['video_uri'], 0)}/{frames.get(v['video_uri'], 0)}")
    agree = sum(1 for v in videos if v["dominant_emotion"] == labels.get(v["video_uri"]))
    print(f"... {len(videos)} videos; the dominant emotion is the clip's label for {agree} of them")
