"""Training in fp32 against bf16 autocast on this CPU, per model: speed and learning (issue 22).

``train.precision=auto`` is bf16 on a CPU with native bf16 (:func:`fv2es.compute.resolve_precision`),
for every model. This measures what that choice costs or gains: the demo corpus (``fv2es demo``'s
clips, with the baselines' hand-crafted features) is preprocessed into shards once, then each
model spec trains in this process (:func:`fv2es.train.local.train_in_process`: the loop Ray Train
runs, one worker) in fp32 and in bf16. Rounds alternate the precisions (fp32, bf16, fp32, bf16,
...) so that load from other processes hits both alike; round ``r`` trains with ``train.seed=r``
(counting from ``--first-seed``), so the precisions are compared seed by seed and over several
seeds (one run on an 18-utterance test split is noise). A one-epoch run of each spec in each
precision first pays the warm-up (imports, weight loads, oneDNN's kernel builds), untimed.

Printed per run: utterances per second per worker (the loop's own
``train_utterances_per_s_per_worker`` over the epochs after the first), the process's CPU
milliseconds per training utterance, evaluation included (the steadier figure on a shared
machine), the best epoch's test accuracy and every epoch's training loss; then per spec the
medians, the bf16/fp32 ratios and the largest per-epoch loss difference over the seeds.

    python benchmarks/train_precision.py --videos 90 --rounds 3 \\
        --models fv2es_tiny:tav:6 lf_rnn:a:24 lf_rnn:tav:24 [--threads 1] [--json out.json]

A spec is ``preset[:modalities[:epochs]]`` (default modalities ``tav``, 6 epochs); learning
rates are the tests' (1e-3; 3e-4 for lf_transformer), batch size 8, early stopping off.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

PRECISIONS = ("fp32", "bf16")
LR = {"lf_transformer": 3e-4}  # the others 1e-3 (tests/train/test_baseline_training.py, the demo)


def build_shards(folder: Path, videos: int) -> str:
    """The demo corpus of ``videos`` clips preprocessed (with hand-crafted features) on a local Ray."""
    import ray

    from fv2es.config import config_from_dict
    from fv2es.media.democorpus import make_demo_corpus
    from fv2es.preprocess import PreprocessRequest, run_preprocess

    manifest = make_demo_corpus(folder / "demo", videos=videos, seed=0, seconds=(1.5, 2.5))
    cfg = config_from_dict({"model": {"preset": "fv2es_tiny"}, "data": {"dataset": "manifest", "hand_crafted": True},
                            "decode": {"max_side": 320}})
    os.environ.setdefault("RAY_DATA_PARQUET_FOOTER_NUM_ACTORS", "1")
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    try:
        run_preprocess(cfg, PreprocessRequest("manifest", str(manifest), str(folder / "shards")))
    finally:
        ray.shutdown()  # training below runs without Ray
    return str(folder / "shards")


def parse_spec(spec: str) -> tuple[str, str, int]:
    """``preset[:modalities[:epochs]]`` -> (preset, modalities, epochs)."""
    preset, modalities, epochs = ([*spec.split(":"), "", ""])[:3]
    return preset, modalities or "tav", int(epochs or 6)


def train_once(shards: str, runs: Path, spec: str, precision: str, seed: int) -> dict:
    """One in-process run; its per-epoch losses and speed, and the best epoch's test accuracy."""
    from fv2es.config import config_from_dict
    from fv2es.train.job import TrainRequest
    from fv2es.train.local import train_in_process

    preset, modalities, epochs = parse_spec(spec)
    cfg = config_from_dict({"model": {"preset": preset, "modalities": modalities},
                            "data": {"dataset": "manifest"},
                            "train": {"lr": LR.get(preset, 1e-3), "batch_size": 8, "text_lr_factor": 10,
                                      "epochs": epochs, "early_stop": epochs, "seed": seed, "precision": precision}})
    name = f"{spec.replace(':', '-')}-{precision}-{seed}"
    cpu = time.process_time()
    best = train_in_process(cfg, TrainRequest(shards, str(runs), name))
    cpu = time.process_time() - cpu
    rows = [json.loads(line) for line in (runs / name / "metrics.jsonl").read_text().splitlines()]
    shutil.rmtree(runs / name)  # every epoch's checkpoint is kept (260 MB each for fv2es_tiny)
    timed = rows[1:] or rows
    utterances = sum(r["train_utterances"] for r in rows)
    return {"spec": spec, "precision": precision, "seed": seed,
            "utt_per_s": sum(r["train_utterances"] for r in timed) / sum(r["train_seconds"] for r in timed),
            "cpu_s_per_utt": cpu / utterances,
            "loss": [r["train_loss"] for r in rows], "best_epoch": best["epoch"],
            "test_acc": best["test_acc"], "valid_avg_f1": best["valid_avg_f1"]}


def summarise(results: list[dict], spec: str) -> dict:
    """Per spec: medians of each precision, the bf16/fp32 ratios, losses and accuracies seed by seed."""
    by = {p: [r for r in results if r["spec"] == spec and r["precision"] == p] for p in PRECISIONS}
    med = {p: {k: statistics.median(r[k] for r in by[p]) for k in ("utt_per_s", "cpu_s_per_utt")} for p in PRECISIONS}
    pairs = list(zip(by["fp32"], by["bf16"]))
    return {"spec": spec, "fp32": med["fp32"], "bf16": med["bf16"],
            "speed_ratio_bf16_over_fp32": med["bf16"]["utt_per_s"] / med["fp32"]["utt_per_s"],
            "cpu_ratio_bf16_over_fp32": med["bf16"]["cpu_s_per_utt"] / med["fp32"]["cpu_s_per_utt"],
            "max_loss_diff": max(max(abs(a - b) for a, b in zip(f["loss"], h["loss"])) for f, h in pairs),
            "last_loss": {p: [r["loss"][-1] for r in by[p]] for p in PRECISIONS},
            "test_acc": {p: [r["test_acc"] for r in by[p]] for p in PRECISIONS},
            "mean_test_acc": {p: statistics.mean(r["test_acc"] for r in by[p]) for p in PRECISIONS}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--videos", type=int, default=60, help="demo clips (70/10/20 split per class) [60]")
    parser.add_argument("--rounds", type=int, default=2, help="seeds; each trains fp32 then bf16 [2]")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first round [0]")
    parser.add_argument("--models", nargs="+", default=["fv2es_tiny:tav:6", "lf_rnn:a:24"],
                        help="specs preset[:modalities[:epochs]] [fv2es_tiny:tav:6 lf_rnn:a:24]")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per run (0: what the loop picks, the machine's cores) [0]")
    parser.add_argument("--workdir", default=None, help="keep the corpus and shards here (reused when present)")
    parser.add_argument("--json", default=None, help="also write every run and the summaries here")
    args = parser.parse_args(argv)

    from fv2es.compute import cpu_has_bf16, resolve_precision
    from fv2es.train import loop

    if args.threads:  # the loop sets its threads from the cores; a busy 2-core machine may want 1
        loop.train_threads = lambda *a: args.threads
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="fv2es-precision-"))
    shards = str(work / "shards")
    started = time.time()
    if not (work / "shards" / "metadata.json").exists():
        shards = build_shards(work, args.videos)
    print(f"shards: {shards} ({time.time() - started:.0f} s); native bf16: {cpu_has_bf16()}; "
          f"train.precision=auto -> {resolve_precision('auto', 'cpu')} on this CPU; load {os.getloadavg()[0]:.1f}",
          flush=True)
    # Untimed: a first run pays imports, weight loads and oneDNN's kernel builds (of each precision).
    for spec in args.models:
        preset, modalities, _ = parse_spec(spec)
        for precision in PRECISIONS:
            train_once(shards, work / "runs", f"{preset}:{modalities}:1", precision, 0)
    results = []
    for seed in range(args.first_seed, args.first_seed + args.rounds):
        for spec in args.models:
            for precision in PRECISIONS:
                r = train_once(shards, work / "runs", spec, precision, seed)
                results.append(r)
                print(f"{spec:<18} {precision} seed {seed}: {r['utt_per_s']:7.1f} utt/s/worker, "
                      f"{r['cpu_s_per_utt'] * 1000:7.1f} CPU ms/utt, test acc {r['test_acc']:.2f} (epoch "
                      f"{r['best_epoch']}), loss " + " ".join(f"{v:.4f}" for v in r["loss"]), flush=True)
    summaries = [summarise(results, spec) for spec in args.models]
    print(f"\nsummary ({args.rounds} seeds, medians; load now {os.getloadavg()[0]:.1f}):")
    for s in summaries:
        print(f"{s['spec']:<18} utt/s/worker fp32 {s['fp32']['utt_per_s']:.1f}, bf16 {s['bf16']['utt_per_s']:.1f} "
              f"(bf16/fp32 {s['speed_ratio_bf16_over_fp32']:.2f}; CPU s/utt {s['cpu_ratio_bf16_over_fp32']:.2f}); "
              f"largest per-epoch loss difference {s['max_loss_diff']:.4f}; test acc fp32 "
              + " ".join(f"{a:.2f}" for a in s["test_acc"]["fp32"]) + " | bf16 "
              + " ".join(f"{a:.2f}" for a in s["test_acc"]["bf16"]))
    if args.json:
        Path(args.json).write_text(json.dumps({"runs": results, "summaries": summaries}, indent=1))
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
