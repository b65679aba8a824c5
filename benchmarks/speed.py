"""Speed of `fv2es score` against the seed's way and against the floor, in one run.

Generates a corpus (benchmarks/speed_corpus.py: 720p and 1080p H.264 at ~4 Mbit/s, a real face
photograph, espeak-ng speech, an .srt sidecar on half the clips), then runs four contenders on
it, interleaved, ``--rounds`` times (the order rotates each round):

  decode_floor  fv2es.media.decode of every clip at the sampling scoring uses, one process per core;
  asr_floor     speech to text alone on the clips without captions (one Whisper, every core);
  face_floor    the face cropper alone (batched MTCNN) on every segment's sampled frames;
  model_floor   the model alone (folded, at the precision scoring uses, torch's default threads)
                on the utterances' decoded frames, face crops and spectrogram pieces (computed once,
                outside the timing), in batches of 16 utterances;
  seed          the seed's way (benchmarks/speed_seed.py): JPEG folders, MTCNN on full-resolution
                frames one at a time, the training-form model at batch 1;
  fv2es         fv2es.score.job.run_score end to end on a local Ray started once with one CPU per
                core (speech-to-text for the clips without captions, when the config has it).

Reports video-seconds per wall second (best and median round), per-stage seconds, mean cores
busy and peak memory of the whole process tree (Ray's workers included), ``ratio_vs_seed``
(seed wall / fv2es wall), ``ratio_vs_floor`` (fv2es wall / (decode floor + model floor)) and
``ratio_vs_full_floor`` (fv2es wall / the sum of the four floors: benchmarks/speed_floors.py);
then the fixed start-up of fv2es (Ray start; a one-clip run; a line fitted through the walls)
and the per-clip and fixed costs of fv2es and of the full floor (floors timed on 1 and all clips).

    python benchmarks/speed.py --json /tmp/speed.json                # 8 clips of 10 s, 3 rounds
    python benchmarks/speed.py --scaling --write-benchmarks          # + 4/8/16 clips, BENCHMARKS.md
    python benchmarks/speed.py resources.model_cpus=1                # config overrides for fv2es
"""

from __future__ import annotations

import argparse
import copy
import datetime
import json
import logging
import multiprocessing
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from speed_corpus import make_corpus  # noqa: E402
from speed_floors import StageFloors, decode_clip, warm  # noqa: E402
from speed_probe import TreeSampler, actor_startup  # noqa: E402
from speed_report import CONTENDERS, FLOORS, SECTION, busy_note, report, write_benchmarks  # noqa: E402, F401
from speed_seed import SeedWay  # noqa: E402

from fv2es.compute import GPU_BATCH_SEGMENTS  # noqa: E402
from fv2es.config import load_config  # noqa: E402
from fv2es.models import create_model, save_checkpoint  # noqa: E402
from fv2es.score.job import ScoreRequest, run_score  # noqa: E402


def scoring_precision(cfg) -> str:
    """``bf16`` or ``fp32``: the model's compute precision when scoring on this machine's CPU
    (``score.precision``, as :func:`fv2es.compute.resolve_precision` resolves it)."""
    from fv2es.compute import resolve_precision

    return resolve_precision(cfg.score.precision, "cpu")


class Bench:
    """The contenders, built once; :meth:`run` times one of them."""

    def __init__(self, args, cfg, clips, work: Path):
        self.args, self.cfg, self.clips, self.work = args, cfg, clips, work
        torch.manual_seed(0)
        model = create_model(cfg.model).eval()  # training form: what the seed ran
        self.ckpt = str(work / "model.safetensors")
        save_checkpoint(self.ckpt, model)
        from fv2es.models.inputs import Collate

        collate = Collate(cfg.model.text_model, cfg.model.text_max_len)
        self.seed = SeedWay(model, collate, cfg.decode.img_interval_ms)
        self.folded = copy.deepcopy(model).reparameterize().eval()
        self.precision = scoring_precision(cfg)
        self.batches = self._model_inputs(collate)
        cpus = os.cpu_count() or 1
        self.pool = ProcessPoolExecutor(cpus, mp_context=multiprocessing.get_context("spawn"))
        list(self.pool.map(warm, range(cpus)))
        self.floors = StageFloors(cfg, clips)
        self.floors.warm_up()
        self.sets: dict[int, Path] = {}
        self.runs = 0

    def _model_inputs(self, collate) -> list:
        """The utterances' model inputs, as scoring builds them, in scoring-sized batches."""
        from fv2es.media.decode import decode
        from fv2es.media.faces import FaceCropper
        from fv2es.media.spectrogram import SpectrogramPieces

        cropper, spectrogram = FaceCropper(self.cfg.faces), SpectrogramPieces(self.cfg.spectrogram)
        samples = []
        for clip in self.clips:
            rows = decode(clip.path, [(s, e) for s, e, _ in clip.utterances], self.cfg.decode)
            for row, (_, _, text) in zip(rows, clip.utterances):
                faces = cropper(row.frames).crops if len(row.frames) else None
                samples.append({"text": text, "faces": faces, "pieces": spectrogram(row.audio)})
        # The GPU's call size (16): the floor is the model's best, and larger passes run a little
        # faster on a CPU too than the 4-segment calls scoring makes there.
        size = GPU_BATCH_SEGMENTS
        self.utterances = len(samples)
        return [collate(samples[i : i + size]) for i in range(0, len(samples), size)]

    def clip_set(self, n: int) -> Path:
        """A folder holding the first ``n`` clips and their sidecars (hard links)."""
        if n not in self.sets:
            folder = self.work / "sets" / f"clips_{n}"
            folder.mkdir(parents=True)
            for clip in self.clips[:n]:
                for src in (Path(clip.path), Path(clip.path).with_suffix(".srt")):
                    if src.exists():
                        try:
                            os.link(src, folder / src.name)
                        except OSError:
                            shutil.copy(src, folder / src.name)
            self.sets[n] = folder
        return self.sets[n]

    def run(self, name: str, n: int | None = None) -> dict:
        """Time contender ``name`` once (``fv2es`` on the first ``n`` clips); its measurements."""
        stages, extra = {}, {}
        with TreeSampler() as probe:
            if name == "decode_floor":
                list(self.pool.map(decode_clip, [c.path for c in self.clips], [self.cfg.decode] * len(self.clips)))
            elif name == "asr_floor":
                extra = self.floors.asr()
                stages["asr"] = extra.pop("asr")
            elif name == "face_floor":
                extra = self.floors.faces()
                stages["face"] = extra.pop("face")
            elif name == "model_floor":
                stages["model"] = self._model_floor()
            elif name == "seed":
                folder = self.work / "seed"
                stages = self.seed.run(self.clips, folder)
            else:
                stages, extra = self._fv2es(n or len(self.clips))
        if name == "seed":
            shutil.rmtree(self.work / "seed")
        return {"wall_s": probe.wall_s, "cpu_s": probe.cpu_s, "cores_busy": probe.cores_busy,
                "peak_rss_mib": probe.peak_rss_mib, "peak_pss_mib": probe.peak_pss_mib, "processes": probe.processes,
                "stages_s": stages, **extra}

    def _model_floor(self, precision: str | None = None) -> float:
        start = time.perf_counter()
        self._forward(precision or self.precision)
        return time.perf_counter() - start

    def _forward(self, precision: str) -> torch.Tensor:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            return torch.cat([self.folded(inputs).float() for inputs in self.batches])

    def precision_check(self) -> dict:
        """bf16 autocast against fp32 on the corpus: largest sigmoid-probability difference, how
        often the top emotion agrees, and the speed-up of the model floor (once, not in the rounds)."""
        start = time.perf_counter()
        fp32 = torch.sigmoid(self._forward("fp32"))
        middle = time.perf_counter()
        bf16 = torch.sigmoid(self._forward("bf16"))
        end = time.perf_counter()
        return {"max_abs_prob_diff": float((fp32 - bf16).abs().max()),
                "top_emotion_agreement": float((fp32.argmax(1) == bf16.argmax(1)).float().mean()),
                "bf16_speedup": (middle - start) / max(end - middle, 1e-9), "utterances": int(fp32.shape[0])}

    def _fv2es(self, n: int) -> tuple[dict, dict]:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        self.runs += 1
        out = self.work / "out" / f"run_{self.runs}"
        counts = run_score(self.cfg, ScoreRequest(str(self.clip_set(n)), str(out), self.ckpt))
        seg = pq.read_table(str(out / "segments"))
        stages = {name: float(pc.sum(pc.fill_null(seg.column(f"{name}_ms"), 0.0)).as_py() or 0.0) / 1000
                  for name in ("decode", "asr", "face", "model") if f"{name}_ms" in seg.column_names}
        sources = seg.column("text_source").to_pylist() if "text_source" in seg.column_names else []
        shutil.rmtree(out)
        return stages, {"segments": counts["segments"], "segments_ok": counts["segments_ok"],
                        "text_sources": {s: sources.count(s) for s in sorted(set(sources))}}


def summarize(runs: list[dict], video_s: float) -> dict:
    """Best and median of a contender's rounds."""
    walls = [r["wall_s"] for r in runs]
    best, median = min(walls), statistics.median(walls)

    def med(key):
        values = [r[key] for r in runs if r[key] is not None]
        return statistics.median(values) if values else None

    stages = {k: statistics.median(r["stages_s"][k] for r in runs) for k in runs[0]["stages_s"]}
    peaks = [r["peak_rss_mib"] for r in runs if r["peak_rss_mib"] is not None]
    pss = [r["peak_pss_mib"] for r in runs if r["peak_pss_mib"] is not None]
    out = {"walls_s": walls, "best_s": best, "median_s": median, "video_s_per_s": video_s / best,
           "video_s_per_s_median": video_s / median, "stages_s": stages, "cores_busy": med("cores_busy"),
           "cpu_s": med("cpu_s"), "peak_rss_mib": max(peaks) if peaks else None,
           "peak_pss_mib": max(pss) if pss else None, "processes": max(r["processes"] for r in runs)}
    for key in ("segments", "segments_ok", "text_sources", "clips", "words", "frames", "found"):
        if key in runs[-1]:
            out[key] = runs[-1][key]
    return out


def fit(points: list[tuple[int, float]]) -> dict | None:
    """Least-squares line wall = fixed + per_clip * clips through (clips, wall) points."""
    if len({n for n, _ in points}) < 2:
        return None
    xs, ys = [n for n, _ in points], [w for _, w in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return {"fixed_s": my - slope * mx, "per_clip_s": slope}


def machine() -> dict:
    """CPU model and core count (lscpu), torch threads, load averages now."""
    model = ""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("Model name")), "")
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def start_ray(tries: int = 3) -> float:
    """Start the local Ray (one CPU per core); seconds the successful start took.

    Ray gives its raylet a fixed 30 s to register; on a machine busy with other work that can run
    out, so the start is tried again (a failed try is not counted)."""
    import ray

    for attempt in range(1, tries + 1):
        start = time.perf_counter()
        try:
            ray.init(num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING)
            return time.perf_counter() - start
        except Exception as e:  # noqa: BLE001 -- Ray raises a bare Exception for this timeout
            if attempt == tries or "timed out during startup" not in str(e):
                raise
            print(f"Ray did not start in time (try {attempt} of {tries}): trying again", flush=True)
            ray.shutdown()
    raise AssertionError("unreachable")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each clip")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="1280x720,1920x1080", help="clip sizes, alternating")
    parser.add_argument("--preset", default="fv2es_paper")
    parser.add_argument("--scaling", action="store_true", help="also time fv2es on 4, 8 and 16 clips")
    parser.add_argument("--corpus", help="folder for the generated corpus (kept and reused); default: temporary")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--write-benchmarks", action="store_true", help="put the table into BENCHMARKS.md")
    parser.add_argument("overrides", nargs="*", help="config overrides, e.g. resources.model_cpus=1")
    args = parser.parse_args(argv)
    if args.clips < 1 or args.rounds < 1 or args.seconds <= 0:
        parser.error("--clips and --rounds must be >= 1 and --seconds > 0")
    command = "python benchmarks/speed.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    cfg = load_config(None, [f"model.preset={args.preset}", "model.text_model=minilm", *args.overrides])
    info = machine()
    scaling_sizes = [4, 8, 16] if args.scaling else []

    import ray
    from ray.data import DataContext

    ray_init_s = start_ray()
    from fv2es.compute import cluster_shape, describe, size_resources
    from fv2es.pipeline.dataset import active_pools

    cpus, gpus = cluster_shape()
    pools = active_pools(cfg)
    sizing = describe(size_resources(cfg.resources, cpus, gpus, model=True, pools=list(pools)), cpus, gpus,
                      model=True, pools=pools)
    DataContext.get_current().enable_progress_bars = False
    with tempfile.TemporaryDirectory(prefix="fv2es-speed-") as tmp:
        work = Path(tmp)
        print(f"corpus: {max([args.clips, *scaling_sizes])} clips of {args.seconds:g} s", flush=True)
        all_clips, voice = make_corpus(Path(args.corpus) if args.corpus else work / "corpus",
                                       max([args.clips, *scaling_sizes]), args.seconds, sizes)
        bench = Bench(args, cfg, all_clips[: args.clips], work)
        check = bench.precision_check()
        video_s = sum(c.seconds for c in bench.clips)
        runs = {name: [] for name in CONTENDERS}
        for r in range(args.rounds):
            for name in CONTENDERS[r % len(CONTENDERS) :] + CONTENDERS[: r % len(CONTENDERS)]:
                runs[name].append(bench.run(name))
                print(f"round {r + 1}/{args.rounds} {name}: {runs[name][-1]['wall_s']:.1f} s", flush=True)
        bench.clips = all_clips  # start-up and scaling runs draw on the whole corpus
        since = time.time()
        one = bench.run("fv2es", 1)["wall_s"]
        actors = actor_startup(since)
        scaling = {n: bench.run("fv2es", n)["wall_s"] for n in scaling_sizes}
        bench.pool.shutdown()
    ray.shutdown()

    contenders = {name: summarize(runs[name], video_s) for name in CONTENDERS}
    c = contenders
    points = sorted([(1, one), (args.clips, c["fv2es"]["median_s"]), *scaling.items()])
    result = {
        "command": command, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": info, "rounds": args.rounds,
        "corpus": {"voice": voice, "video_s": video_s, "utterances": bench.utterances,
                   "clips": [vars(x) | {"utterances": len(x.utterances)} for x in all_clips[: args.clips]]},
        "config": {"preset": args.preset, "text_model": cfg.model.text_model, "precision": bench.precision,
                   "resources": sizing,
                   "asr": cfg.asr.mode if hasattr(cfg, "asr") else None, "overrides": args.overrides},
        "contenders": contenders,
        "ratio_vs_seed": {"best": c["seed"]["best_s"] / c["fv2es"]["best_s"],
                          "median": c["seed"]["median_s"] / c["fv2es"]["median_s"]},
        "ratio_vs_floor": {
            "best": c["fv2es"]["best_s"] / (c["decode_floor"]["best_s"] + c["model_floor"]["best_s"]),
            "median": c["fv2es"]["median_s"] / (c["decode_floor"]["median_s"] + c["model_floor"]["median_s"])},
        "ratio_vs_full_floor": {k: c["fv2es"][f"{k}_s"] / sum(c[f][f"{k}_s"] for f in FLOORS)
                                for k in ("best", "median")},
        "floor_per_clip_s": {**{f: c[f]["best_s"] / args.clips for f in FLOORS},
                             "full floor": sum(c[f]["best_s"] for f in FLOORS) / args.clips},
        "startup": {"ray_init_s": ray_init_s, "one_clip_wall_s": one, "actors": actors, "points": points,
                    "fit": fit(points)},
        "scaling": scaling or None,
        "precision_check": check,
    }
    result["machine"]["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else [0.0]
    print(report(result) + busy_note(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    if args.write_benchmarks:
        write_benchmarks(Path(__file__).resolve().parent.parent / "BENCHMARKS.md", result)
    return result


if __name__ == "__main__":
    main()
