"""The scoring job: list -> the media stages (decode, transcribe, spectrogram, faces) -> model actors
-> Parquet, on Ray Data."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import time
from dataclasses import dataclass

import pyarrow.compute as pc

import fv2es
from fv2es.config import Config, to_dict
from fv2es.media.isolate import is_transient
from fv2es.models.packaged import PACKAGED_URI
from fv2es.pipeline.dataset import (
    build_dataset,
    check_ray_address,
    check_speech_model,
    init_ray,
    media_job,
    media_stages,
    sized_config,
)
from fv2es.pipeline.numbering import SegmentNumbering
from fv2es.pipeline.plan import iter_jobs
from fv2es.pipeline.stages import media_columns, media_config_sections, media_timing
from fv2es.predict import fusion_weights, read_model_info
from fv2es.progress import Progress
from fv2es.score.collect import VideoCollector
from fv2es.score.model_stage import ModelStage
from fv2es.score.output import SUMMARIES, ScoreOutput
from fv2es.score.planning import TodoPlan
from fv2es.score.summary import summarize_jobs
from fv2es.storage import check_access, options_for, redact_uri

log = logging.getLogger(__name__)


def segment_columns(emotions) -> list[str]:
    """The columns of the per-segment table, in order (the README documents each): what each
    media stage and the model stage declare, then ``status`` and ``error``, then the timings."""
    return [*media_columns(), *ModelStage.columns(emotions), "status", "error", *media_timing(), *ModelStage.timing]


@dataclass
class ScoreRequest:
    """What to score, where to write, with which checkpoint."""

    input_uri: str
    output_uri: str
    checkpoint_uri: str = PACKAGED_URI  # an fv2es checkpoint file, or the packaged default model
    storage_options: dict | None = None  # for s3:// (and other remote) URIs
    address: str | None = None  # Ray address; None: RAY_ADDRESS or an embedded local Ray
    retry_failed: bool = False  # re-score the jobs whose rows failed with a transient kind


def scoring_config(cfg: Config, model_config) -> dict:
    """What the scores depend on: the checkpoint's model config (not the config file's ``model``
    section) and the sections the media stages declare (decode, segments, speech, spectrogram,
    faces). Resources and the like are left out: they change how fast, not what, so a resume may
    change them (``decode.nice`` too: a CPU priority)."""
    sections = {k: to_dict(getattr(cfg, k)) for k in media_config_sections()}
    sections.get("decode", {}).pop("nice", None)
    return {"model": to_dict(model_config), **sections}


def run_score(cfg: Config, req: ScoreRequest) -> dict:
    """Score every input not yet in the output; returns the counts written to ``_SUCCESS``.

    Before any work: every S3 URI's credentials and bucket, the checkpoint, the Ray address and
    the speech model are checked; then the output's lease is taken (one run per output) and the
    output's model and config checked against this run's (one model per output).
    """
    started = time.time()
    for uri, what in ((req.checkpoint_uri, "checkpoint"), (req.input_uri, "input"), (req.output_uri, "output")):
        check_access(uri, req.storage_options, what)
    info = read_model_info(req.checkpoint_uri, options_for(req.checkpoint_uri, req.storage_options))
    if getattr(info.config, "hand_crafted", False):  # a seed baseline: its feature stages run too
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, hand_crafted=True))
    check_ray_address(req.address)
    check_speech_model(cfg, req.storage_options)  # before any video is read
    emotions = list(info.config.emotions)
    config = scoring_config(cfg, info.config)
    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    metadata = {
        "fv2es.version": fv2es.__version__,
        "fv2es.emotions": json.dumps(emotions),
        "fv2es.model_id": info.model_id,
        "fv2es.checkpoint": redact_uri(req.checkpoint_uri),  # a presigned URL's signature is a secret
        "fv2es.thresholds": json.dumps(info.thresholds),
        "fv2es.fusion_weights": json.dumps(fusion_weights(req.checkpoint_uri, info,
                                                          options_for(req.checkpoint_uri, req.storage_options))),
        "fv2es.config": json.dumps(config),
        "fv2es.config_digest": digest,
    }
    # A stream of job tables; its first is read here, so an input that names nothing fails before the lease.
    tables = iter_jobs(req.input_uri, cfg.score, options_for(req.input_uri, req.storage_options))
    jobs = itertools.chain([next(tables)], tables)
    # Each part is committed with its jobs' summary: the finish reads those, never every segment.
    output = ScoreOutput(req.output_uri, options_for(req.output_uri, req.storage_options), metadata,
                         write_retries=cfg.score.write_retries, beside={SUMMARIES: summarize_jobs})
    with output.lease(cfg.score.lease_ttl_s):
        output.pin({"model_id": info.model_id, "config_digest": digest,
                    "checkpoint": redact_uri(req.checkpoint_uri), "fv2es_version": fv2es.__version__})
        return _run_leased(cfg, req, output, jobs, info, emotions, started)


def _run_leased(cfg: Config, req: ScoreRequest, output: ScoreOutput, jobs, info, emotions, started):
    """The job, once this run holds the output's lease and the output is known to be this model's.

    What the driver holds does not grow with the archive: the plan streams past (``jobs``: job
    tables) and only the jobs the output lacks go on, the done set is the output's job index
    (job ids and per-job sums, :meth:`~fv2es.score.output.ScoreOutput.job_index`), and the
    per-video table is made from those sums."""
    plan = TodoPlan(jobs, output.done_ids(redo=is_transient if req.retry_failed else None))
    todo = iter(plan)
    first = next(todo, None)  # walks the whole plan when there is nothing to do
    if first is None and output.is_complete():
        counts = output.success()
        log.info(f"{redact_uri(req.output_uri)} is already complete: {counts['videos']} videos "
                 f"({counts['videos_ok']} ok, {counts['videos_failed']} failed)")
        return counts
    output.start()
    collector = VideoCollector(output, segment_columns(emotions), cfg.score.part_videos)
    held = _stream(cfg, req, itertools.chain([first], todo), plan, collector, info) if first is not None else []
    collector.flush()
    missing = {**collector.incomplete(), **dict.fromkeys(held, 0)}
    if missing:
        raise RuntimeError(f"rows missing for {len(missing)} jobs (e.g. job {next(iter(missing))}); output left incomplete")

    output.compact()  # before the summary: a re-scored job's earlier rows must not count
    videos = output.videos(emotions)
    ok = int(pc.sum(pc.equal(videos.column("status"), "ok")).as_py() or 0)
    counts = {
        "inputs": plan.inputs,
        "videos": videos.num_rows,
        "videos_ok": ok,
        "videos_failed": videos.num_rows - ok,
        "segments": int(pc.sum(videos.column("segments")).as_py() or 0),
        "segments_ok": int(pc.sum(videos.column("segments_ok")).as_py() or 0),
        "model_id": info.model_id,
        "fv2es_version": fv2es.__version__,
    }
    if counts["videos"] != counts["inputs"]:
        raise RuntimeError(f"{counts['inputs']} inputs but {counts['videos']} videos in the output; left incomplete")
    output.finish(videos, counts)
    _report(counts, collector, time.time() - started)
    return counts


def _stream(cfg: Config, req: ScoreRequest, todo, plan: TodoPlan, collector: VideoCollector, info) -> list:
    """Run the pipeline over ``todo`` (job tables) into ``collector``; returns the jobs cut at
    speech left with chunks missing."""
    init_ray(req.address)
    cfg = sized_config(cfg, model=True)  # resources sized and precision resolved, once for the job
    collector.output.metadata[b"fv2es.precision"] = cfg.score.precision.encode()  # before any part is written
    # The options go to every remote video and audio URI (a local manifest may list s3:// videos).
    job = media_job(cfg, cfg.segments, req.storage_options, req.storage_options)
    model = ModelStage.spec(job, req.checkpoint_uri, options_for(req.checkpoint_uri, req.storage_options))
    ds = build_dataset(todo, [*media_stages(job), model])  # walks the rest of the plan into Ray's object store
    log.info(f"scoring {plan.todo} of {plan.jobs} videos ({plan.jobs - plan.todo} already done) with model "
             f"{info.model_id} -> {redact_uri(req.output_uri)}")
    numbering = SegmentNumbering(cfg.speakers.threshold)
    progress = Progress("score", plan.todo)  # one line: in place on a terminal, periodic in a log
    for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
        for table in numbering.add(batch):
            collector.add(table)
        progress.update(collector.videos_done, collector.videos_failed, collector.seconds)
    progress.finish()
    return numbering.incomplete()


def _report(counts: dict, collector: VideoCollector, wall: float) -> None:
    mean = collector.mean_timing  # this run's segments (the output's others were timed by their own runs)

    log.info(f"done in {wall:.1f} s: inputs {counts['inputs']} | ok {counts['videos_ok']} | failed "
             f"{counts['videos_failed']} | segments {counts['segments']} ({counts['segments_ok']} ok)")
    log.info(f"this run: {collector.videos_done} videos, {collector.seconds:.1f} video-seconds scored, "
             f"{collector.seconds / max(wall, 1e-9):.2f} video-s per wall second")
    log.info(f"per segment this run: decode {mean('decode_ms'):.0f} ms, speech-to-text {mean('asr_ms'):.0f} ms, "
             f"faces {mean('face_ms'):.0f} ms, model {mean('model_ms'):.0f} ms")
