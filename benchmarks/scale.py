"""Archive scale: what the scoring job's driver costs as the archive grows (issue 21).

Each figure is measured in a fresh Python process (so its peak RSS growth is its own), in one run:

- plan: planning a CSV manifest of N rows (two utterances a video), the driver's stream of job
  tables walked to the end (fv2es.pipeline.plan.iter_jobs through fv2es.score.planning.TodoPlan);
  the largest also as Parquet and as JSON Lines;
- prefix: listing a bucket prefix of N objects on S3 (moto's server on 127.0.0.1, a page of 1,000
  keys a request; moto's own time per page grows with the bucket, so the driver's CPU is the figure);
- finish: the finish of a committed output of N segments (10 a video, 64 videos a part): the job
  index from the parts' summaries, the per-video table, ``_jobs``, ``videos.parquet``, ``_SUCCESS``;
- pipeline: ``fv2es score`` end to end on a manifest of N missing files (each a fast failed row,
  ``asr.mode=never``, the tiny model, a 2-CPU local Ray started first), per input; the finish's share;
- rerun / add 10 / retry: ``fv2es score`` again on the complete 100k-video output: nothing to do;
  ten new (missing) videos; ``--retry-failed`` with the transient failures in it (every 1,000th video);
- report: ``fv2es report`` of the 10k- and 100k-video outputs: wall and page size.

It prints a table: each figure's wall and driver CPU time (the step process's user + system
seconds: on a machine shared with other work, CPU is the steadier figure), per item, its peak RSS
growth, and its growth per 10x of work (time per item at 10x over time per item at 1x; 1.0 is
linear), then the goals of issue 21, met or not.

    python benchmarks/scale.py                 # every figure (about 10 minutes on 2 cores)
    python benchmarks/scale.py --quick         # a tenth of every size
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
SEGMENTS_PER_VIDEO, PART_VIDEOS = 10, 64


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def cpu_s() -> float:
    """This process's CPU seconds (user + system): on a shared machine, steadier than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Measure:
    """Wall, CPU and peak RSS growth of a block (RSS sampled every 10 ms from another thread)."""

    def __enter__(self):
        import threading

        self.base, self.peak, self.stop = rss_mb(), rss_mb(), threading.Event()

        def sample():
            while not self.stop.wait(0.01):
                self.peak = max(self.peak, rss_mb())

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        self.cpu, self.started = cpu_s(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.started, cpu_s() - self.cpu
        self.stop.set()
        self.thread.join()
        self.peak = max(self.peak, rss_mb())

    def result(self, **extra) -> dict:
        return {"wall": self.wall, "cpu": self.cpu, "rss": self.peak - self.base, **extra}


# -- the steps, each run in its own process ---------------------------------------------------------

def step_plan(work: Path, n: int, kind: str = "csv") -> dict:
    from fv2es.config import ScoreConfig
    from fv2es.pipeline.plan import iter_jobs
    from fv2es.score.planning import TodoPlan

    manifest = work / f"manifest-{n}.csv"
    if not manifest.exists():
        with open(manifest, "w") as f:
            f.write("id,video_uri,start,end,text\n")
            for i in range(n):
                v = i // 2
                f.write(f"u{i},s3://archive/videos/{v // 1000:04d}/v{v:07d}.mp4,{(i % 2) * 5},{(i % 2) * 5 + 4},"
                        f"words of utterance {i}\n")
    import pyarrow as pa

    if kind != "csv":  # the same rows as Parquet or JSON Lines
        import pyarrow.csv as pv

        rows = pv.read_csv(manifest, convert_options=pv.ConvertOptions(column_types={"id": pa.string()}))
        manifest = work / f"manifest-{n}.{kind}"
        if kind == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(rows, manifest)
        else:
            with open(manifest, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows.to_pylist())
        del rows
    with Measure() as m:
        plan = TodoPlan(iter_jobs(str(manifest), ScoreConfig()), pa.array([], pa.string()))
        tables = sum(1 for _ in plan)
    return m.result(jobs=plan.jobs, tables=tables, videos=plan.inputs)


def step_prefix(work: Path, n: int, endpoint: str) -> dict:
    from fv2es.pipeline.plan import iter_videos

    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": endpoint,
                                                                       "region_name": "us-east-1"}}
    with Measure() as m:
        found = sum(len(page) for page in iter_videos(f"s3://bench-{n}/videos/", (".mp4",), options))
    return m.result(objects=found)


def model_id(work: Path) -> tuple[str, str]:
    """A tiny checkpoint (made once) and its model id."""
    from fv2es.predict import read_model_info

    path = work / "tiny.safetensors"
    if not path.exists():
        import torch

        from fv2es.config import config_from_dict
        from fv2es.models import create_model, save_checkpoint

        torch.manual_seed(0)
        save_checkpoint(str(path), create_model(config_from_dict({"model": {"preset": "fv2es_tiny"}}).model),
                        thresholds=[0.5] * 6)
    return str(path), read_model_info(str(path), None).model_id


def make_output(work: Path, segments: int) -> Path:
    """A committed, unfinished output of ``segments`` rows (as fv2es score writes them), and the
    manifest of its videos; every 1,000th video failed transiently (for --retry-failed)."""
    import numpy as np
    import pyarrow as pa

    from fv2es.emotions import IEMOCAP_EMOTIONS
    from fv2es.pipeline.plan import job_id
    from fv2es.score.output import SUMMARIES, ScoreOutput
    from fv2es.score.summary import summarize_jobs

    out = work / f"out-{segments}"
    _, mid = model_id(work)
    output = ScoreOutput(str(out), metadata={"fv2es.model_id": mid, "fv2es.emotions": json.dumps(IEMOCAP_EMOTIONS)},
                         beside={SUMMARIES: summarize_jobs})
    output.start()
    videos = segments // SEGMENTS_PER_VIDEO
    rng = np.random.default_rng(0)
    uris = [str(work / "videos" / f"v{v:07d}.mp4") for v in range(videos)]
    for first in range(0, videos, PART_VIDEOS):
        vs = np.arange(first, min(videos, first + PART_VIDEOS))
        n = len(vs) * SEGMENTS_PER_VIDEO
        video = np.repeat(vs, SEGMENTS_PER_VIDEO)
        k = np.tile(np.arange(SEGMENTS_PER_VIDEO), len(vs))
        failed = (video % 1000 == 999)
        probs = rng.random((n, len(IEMOCAP_EMOTIONS)))
        table = {"video_uri": pa.array([uris[v] for v in video]), "job_id": pa.array(
                     [job_id({"video_uri": uris[v]}) for v in video]), "speaker_side": pa.nulls(n, pa.string()),
                 "segment_index": pa.array(k, pa.int32()), "segment_count": pa.array(np.full(n, 10), pa.int32()),
                 "start": pa.array(k * 2.0), "end": pa.array(k * 2.0 + 2.0), "video_duration_s": pa.array(np.full(n, 20.0)),
                 **{f"prob_{e}": pa.array(np.where(failed, np.nan, probs[:, i]), mask=failed)
                    for i, e in enumerate(IEMOCAP_EMOTIONS)},
                 "model_id": pa.array([mid] * n), "status": pa.array(np.where(failed, "unreadable", "ok")),
                 "error": pa.array(np.where(failed, "unreadable: ConnectionResetError: reset", ""))}
        output.write_part(pa.table(table))
    with open(work / f"manifest-out-{segments}.csv", "w") as f:
        f.write("video_uri\n" + "".join(u + "\n" for u in uris))
    return out


def step_finish(work: Path, n: int) -> dict:
    from fv2es.emotions import IEMOCAP_EMOTIONS
    from fv2es.score.output import SUMMARIES, ScoreOutput
    from fv2es.score.summary import summarize_jobs

    out = make_output(work, n)
    output = ScoreOutput(str(out), beside={SUMMARIES: summarize_jobs})
    with Measure() as m:
        output.compact()
        videos = output.videos(list(IEMOCAP_EMOTIONS))
        ok = videos.num_rows - videos.column("status").to_pylist().count("unreadable")
        output.finish(videos, {"inputs": videos.num_rows, "videos": videos.num_rows, "videos_ok": ok,
                               "videos_failed": videos.num_rows - ok})
    return m.result(videos=videos.num_rows)


def score(work: Path, manifest: Path, out: Path, retry: bool = False) -> tuple[float, float, dict]:
    """``fv2es score`` (tiny model, asr never) of ``manifest`` into ``out``: (wall, finish wall, counts)."""
    from fv2es.config import config_from_dict
    from fv2es.score.job import ScoreRequest, run_score
    from fv2es.score.output import ScoreOutput

    checkpoint, _ = model_id(work)
    cfg = config_from_dict({"model": {"preset": "fv2es_tiny"}, "decode": {"max_side": 320}, "asr": {"mode": "never"}})
    spent = [0.0]
    compact, finish = ScoreOutput.compact, ScoreOutput.finish

    def timed(fn):
        def run(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - t
        return run

    ScoreOutput.compact, ScoreOutput.finish = timed(compact), timed(finish)
    started = time.perf_counter()
    counts = run_score(cfg, ScoreRequest(str(manifest), str(out), checkpoint, retry_failed=retry))
    return time.perf_counter() - started, spent[0], counts


def step_pipeline(work: Path, n: int) -> dict:
    import ray

    manifest = work / f"missing-{n}.csv"
    manifest.write_text("video_uri\n" + "".join(f"{work}/missing/m{i:06d}.mp4\n" for i in range(n)))
    ray.init(num_cpus=2, logging_level=logging.WARNING, log_to_driver=False)
    with Measure() as m:
        _, finish, counts = score(work, manifest, work / f"scores-missing-{n}")
    return m.result(finish=finish, failed=counts["videos_failed"])


def step_rerun(work: Path, segments: int) -> dict:
    """Rerun, add 10, --retry-failed on the finished output of ``segments`` (made by step_finish)."""
    import ray

    out, manifest = work / f"out-{segments}", work / f"manifest-out-{segments}.csv"
    with Measure() as m:
        score(work, manifest, out)
    result = {"rerun": m.wall, "rerun_cpu": m.cpu, "rss": m.peak - m.base}
    added = work / f"manifest-add-{segments}.csv"
    added.write_text(manifest.read_text() + "".join(f"{work}/new/n{i}.mp4\n" for i in range(10)))
    ray.init(num_cpus=2, logging_level=logging.WARNING, log_to_driver=False)
    result["add10"], result["add10_finish"], counts = score(work, added, out)
    result["retry"], result["retry_finish"], _ = score(work, added, out, retry=True)
    result["videos"] = counts["videos"]
    return result


def step_report(work: Path, segments: int) -> dict:
    from fv2es.report import write_report

    with Measure() as m:
        index = write_report(work / f"report-{segments}", scores_uri=str(work / f"out-{segments}"))
    return m.result(bytes=sum(p.stat().st_size for p in index.parent.iterdir()))


STEPS = {"plan": step_plan, "prefix": step_prefix, "finish": step_finish, "pipeline": step_pipeline,
         "rerun": step_rerun, "report": step_report}


def run_step(name: str, work: Path, n: int, *extra: str) -> dict:
    """Run one step in a fresh process; its JSON result."""
    done = subprocess.run([sys.executable, str(HERE), "--step", name, str(work), str(n), *extra],
                          capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"step {name} {n} failed:\n{done.stderr[-4000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {name} {n:>9,}: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in result.items()), flush=True)
    return result


def moto_with_prefixes(sizes: list[int]):
    """moto's server on 127.0.0.1 with a bucket ``bench-<n>`` of n objects for each size (put
    straight into moto's in-process store: a PUT each would take longer than the listing)."""
    from moto.s3.models import s3_backends
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    backend = s3_backends["123456789012"]["global"]
    for n in sizes:
        backend.create_bucket(f"bench-{n}", "us-east-1")
        for i in range(n):
            backend.put_object(f"bench-{n}", f"videos/{i // 1000:03d}/v{i:07d}.mp4", b"")
    return server, f"http://{host}:{port}"


def growth(results: dict, key: str = "wall") -> float:
    """Time per item at the largest size over time per item at the smallest, per 10x of size."""
    import math

    (n0, r0), (n1, r1) = min(results.items()), max(results.items())
    return ((r1[key] / n1) / (r0[key] / n0)) ** (1 / math.log10(n1 / n0))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of every size")
    parser.add_argument("--step", nargs="+", help=argparse.SUPPRESS)  # internal: one step in this process
    args = parser.parse_args(argv)
    if args.step:
        name, work, n, *extra = args.step
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        print(json.dumps(STEPS[name](Path(work), int(n), *extra)))
        return 0
    div = 10 if args.quick else 1
    os.environ.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    with tempfile.TemporaryDirectory(prefix="fv2es-scale-") as tmp:
        work = Path(tmp)
        model_id(work)  # the tiny checkpoint, made here so that no step's figures include it
        started = time.perf_counter()
        plan = {n: run_step("plan", work, n) for n in (10_000 // div, 100_000 // div, 1_000_000 // div)}
        formats = {kind: run_step("plan", work, 1_000_000 // div, kind) for kind in ("parquet", "jsonl")}
        # moto answers a page in time that grows with the bucket (it sorts every key each request),
        # so its 100k-object listing takes most of an hour on a busy machine: 1k and 10k here.
        sizes = [1_000 // div, 10_000 // div]
        server, endpoint = moto_with_prefixes(sizes)
        try:
            prefix = {n: run_step("prefix", work, n, endpoint) for n in sizes}
        finally:
            server.stop()
        finish = {n: run_step("finish", work, n) for n in (10_000 // div, 100_000 // div, 1_000_000 // div)}
        report = {n: run_step("report", work, n) for n in (100_000 // div, 1_000_000 // div)}
        # The 2k and 20k take ~0.1 s an input on a machine shared by other jobs: a tenth here.
        pipeline = {n: run_step("pipeline", work, n) for n in (200 // div, 2_000 // div)}
        rerun = run_step("rerun", work, 1_000_000 // div)
        total = time.perf_counter() - started
    big = lambda d: d[max(d)]  # noqa: E731
    rows = [("plan manifest rows", plan), ("list S3 prefix objects", prefix),
            ("finish + summary, segments", finish), ("report, videos (x10 segments)", report),
            ("pipeline, failing inputs", pipeline)]
    print("\n| figure | size | wall s | per item | driver CPU s | per item | driver RSS growth MB "
          "| growth per 10x (wall / CPU) |\n| --- | --: | --: | --: | --: | --: | --: | --: |")
    for title, results in rows:
        for n, r in sorted(results.items()):
            g = f"{growth(results):.2f} / {growth(results, 'cpu'):.2f}" if n == max(results) else ""
            print(f"| {title} | {n:,} | {r['wall']:.2f} | {1e6 * r['wall'] / n:.1f} µs | {r['cpu']:.2f} | "
                  f"{1e6 * r['cpu'] / n:.1f} µs | {r['rss']:.0f} | {g} |")
    for kind, r in formats.items():
        print(f"| plan manifest rows ({kind}) | {max(plan):,} | {r['wall']:.2f} | {1e6 * r['wall'] / max(plan):.1f} µs | "
              f"{r['cpu']:.2f} | {1e6 * r['cpu'] / max(plan):.1f} µs | {r['rss']:.0f} | |")
    videos = rerun["videos"] - 10
    print(f"| rerun, complete output | {videos:,} videos | {rerun['rerun']:.2f} | | {rerun['rerun_cpu']:.2f} | | "
          f"{rerun['rss']:.0f} | |")
    print(f"| add 10 videos (its finish) | {videos:,} videos | {rerun['add10']:.2f} ({rerun['add10_finish']:.2f}) "
          "| | | | | |")
    print(f"| --retry-failed (its finish) | {videos:,} videos | {rerun['retry']:.2f} ({rerun['retry_finish']:.2f}) "
          "| | | | | |")
    for n, r in sorted(pipeline.items()):
        print(f"| pipeline's finish share | {n:,} | {r['finish']:.2f} | {1e6 * r['finish'] / n:.1f} µs | | | | |")
    for n, r in sorted(report.items()):
        print(f"| report page + PNGs | {n // SEGMENTS_PER_VIDEO:,} videos | | {r['bytes'] / 1e6:.2f} MB | | | | |")
    goals = [
        ("linear: growth per 10x <= 1.3 (plan, prefix, finish, report, pipeline)",
         all(growth(d) <= 1.3 for d in (plan, prefix, finish, report, pipeline))),
        (f"plan {max(plan):,} rows < 30 s and RSS growth < 300 MB",
         big(plan)["wall"] < 30 and big(plan)["rss"] < 300),
        (f"finish + summary of {max(finish):,} segments < 60 s", big(finish)["wall"] < 60),
        (f"rerun on a complete {videos:,}-video output < 20 s", rerun["rerun"] < 20),
        (f"per-input overhead at {max(pipeline):,} inputs < 5 ms", big(pipeline)["wall"] / max(pipeline) < 0.005),
        (f"report of {max(report) // SEGMENTS_PER_VIDEO:,} videos < 60 s and 5 MB",
         big(report)["wall"] < 60 and big(report)["bytes"] < 5e6),
    ]
    print("\ngoals (issue 21):")
    for goal, met in goals:
        print(f"  [{'met' if met else 'NOT met'}] {goal}")
    print(f"\nbenchmark wall {total:.0f} s; {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
