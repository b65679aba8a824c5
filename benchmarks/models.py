"""The model stage of each model fv2es ships or trains, on the same segments, per video-second.

The packaged default (``packaged:fer2013-minilm``: the FER2013 face network on every sampled
frame's crop, MiniLM zero-shot on the words), the demo model (``fv2es_tiny``, the architecture
``fv2es demo`` trains: its weights do not change its speed, so a fresh one stands in) and the
paper's network (``fv2es_paper`` with the packaged MiniLM as its text encoder), each through
:class:`~fv2es.score.model_stage.ModelStage` as a scoring job runs it (one actor, ``--threads``
torch threads, the precision ``score.precision=auto`` resolves to on this machine), on segment
rows the media stages made once in this process from demo clips with captions. Rounds alternate
the models, so a busy machine slows each alike; the figures are medians, with the process's CPU
seconds beside the wall (the steadier figure on a shared machine).

    python benchmarks/models.py --clips 8 --seconds 4 --rounds 3 [--precision fp32]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import pyarrow as pa

MODELS = ("packaged", "fv2es_tiny", "fv2es_paper")


def segment_rows(clips: int, seconds: float, folder: Path) -> tuple[pa.Table, float]:
    """The media stages' rows of ``clips`` demo clips (320 px, captions, no speech to text), and
    the video-seconds they cover."""
    from fv2es.config import config_from_dict
    from fv2es.media.democorpus import make_demo_corpus
    from fv2es.pipeline.dataset import media_stages
    from fv2es.pipeline.local import local_job, run_stages
    from fv2es.pipeline.plan import iter_jobs

    make_demo_corpus(folder, videos=clips, seed=0, seconds=(seconds, seconds))
    cfg = config_from_dict({"model": {"preset": "fv2es_tiny"}, "decode": {"max_side": 320}})
    cfg = dataclasses.replace(cfg, asr=dataclasses.replace(cfg.asr, mode="never"))
    job = local_job(cfg, cfg.segments)
    rows = run_stages(pa.concat_tables(iter_jobs(str(folder), cfg.score)), media_stages(job))
    ok = rows.filter(pa.compute.equal(rows.column("status"), "ok"))
    return ok, float(pa.compute.sum(pa.compute.subtract(ok.column("end"), ok.column("start"))).as_py())


def checkpoint(name: str, folder: Path) -> str | None:
    """The checkpoint a scoring job would get for ``name`` (None: the packaged default)."""
    if name == "packaged":
        return None
    import torch

    from fv2es.config import config_from_dict
    from fv2es.models import create_model, save_checkpoint

    torch.manual_seed(0)
    cfg = config_from_dict({"model": {"preset": name, "text_model": "minilm"}})
    path = str(folder / f"{name}.safetensors")
    save_checkpoint(path, create_model(cfg.model, pretrained_text=True).reparameterize().eval())
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each clip")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the model stage")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="as score.precision (auto: bf16 where the CPU has it natively)")
    args = parser.parse_args()

    from fv2es.compute import resolve_precision
    from fv2es.score.model_stage import ModelStage

    precision = resolve_precision(args.precision, "cpu")
    with tempfile.TemporaryDirectory(prefix="fv2es-models-") as tmp:
        rows, video_s = segment_rows(args.clips, args.seconds, Path(tmp) / "clips")
        stages = {name: ModelStage(checkpoint(name, Path(tmp)), threads=args.threads, precision=precision)
                  for name in MODELS}
        for stage in stages.values():
            stage(rows.slice(0, 1))  # warm-up: first-call allocations, lazy imports
        wall = {name: [] for name in MODELS}
        cpu = {name: [] for name in MODELS}
        for _ in range(args.rounds):
            for name, stage in stages.items():
                c, w = time.process_time(), time.perf_counter()
                stage(rows)
                wall[name].append(time.perf_counter() - w)
                cpu[name].append(time.process_time() - c)

    cpu_name = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p'"], capture_output=True,
                              text=True).stdout.strip()
    print(f"{rows.num_rows} segments, {video_s:.1f} video-s; {cpu_name}, precision {precision}, "
          f"{args.threads} threads, median of {args.rounds} rounds")
    print("| model | wall per video-second | CPU per video-second | wall vs packaged |")
    print("| --- | --: | --: | --: |")
    base = statistics.median(wall["packaged"])
    for name in MODELS:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        print(f"| {name} | {w / video_s * 1000:.1f} ms | {c / video_s * 1000:.1f} ms | {w / base:.2f}x |")


if __name__ == "__main__":
    main()
