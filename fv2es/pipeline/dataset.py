"""The Ray side of the media pipeline: the embedded-or-cluster Ray, the list of stages, and job
rows -> segment rows as a streaming Dataset (the scoring and preprocessing jobs both start here).

The stages are data: each stage class declares its run (:mod:`fv2es.pipeline.spec`), a job's
config is sized once (:func:`sized_config`), :func:`media_stages` lists the stages' specs and
:func:`build_dataset` chains whatever list it is given. A new stage between decode and the model
is one more entry in :data:`fv2es.pipeline.stages.MEDIA_STAGES`.
"""

from __future__ import annotations

import dataclasses
import logging
import os

from fv2es.config import Config, SegmentsConfig
from fv2es.errors import ConfigError, UserError
from fv2es.pipeline.spec import MediaJob, StageSpec
from fv2es.pipeline.stages import MEDIA_STAGES
from fv2es.storage import options_for

SAMPLE_RATE = 16000  # Whisper's input rate: the decoded audio's when speech-to-text runs


def init_ray(address: str | None) -> None:
    """Connect to ``address``, else ``RAY_ADDRESS``, else start an embedded local Ray (once).
    An address that does not answer fails in one line (:func:`check_ray_address`), not after
    Ray's minutes of retries."""
    import ray

    if not ray.is_initialized():
        check_ray_address(address)
        ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)


def check_ray_address(address: str | None, timeout_s: float = 30.0) -> None:
    """Raise :class:`~fv2es.errors.UserError` unless ``address`` (else ``RAY_ADDRESS``), when it
    names a host and port (``host:port``, ``ray://host:port``), accepts a TCP connection. A refused
    connection is tried three times a second apart; one that hangs until ``timeout_s`` in all.
    ``auto``, ``local`` and no address are left to Ray."""
    import socket
    import time

    given = address or os.environ.get("RAY_ADDRESS") or ""
    hostport = given.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if given in ("", "auto", "local") or not host or not port.isdigit():
        return
    deadline, refused, reason = time.monotonic() + timeout_s, 0, ""
    while time.monotonic() < deadline and refused < 3:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=max(0.1, deadline - time.monotonic())):
                return
        except ConnectionRefusedError:
            refused, reason = refused + 1, "connection refused"
            time.sleep(1.0)
        except OSError as e:  # a name that does not resolve, a timeout, no route
            reason = e.strerror or type(e).__name__
            if isinstance(e, socket.gaierror):
                break
            time.sleep(1.0)
    source = "--address" if address else "RAY_ADDRESS"
    raise UserError(f"no Ray cluster answers at {given} ({source}): {reason}; start the cluster, fix the "
                    f"address, or leave it out for an embedded local Ray")


def check_speech_model(cfg: Config, storage_options: dict | None) -> None:
    """On the driver, at a job's start: load the speech-to-text model once, unless ``asr.mode`` is
    ``never``, so a model that cannot load fails the job with one clear
    :class:`~fv2es.asr.models.AsrModelError` before any video is read."""
    if cfg.asr.mode == "never":
        return
    if cfg.decode.sample_rate != SAMPLE_RATE:
        raise ConfigError(f"decode.sample_rate ({cfg.decode.sample_rate}) must be {SAMPLE_RATE} for speech to text "
                          "(Whisper's rate); change it back or set asr.mode=never")
    from fv2es.asr.engine import check_model

    check_model(cfg.asr, options_for(cfg.asr.model, storage_options))


def sized_config(cfg: Config, *, model: bool, shape: tuple[float, float] | None = None) -> Config:
    """``cfg`` as one job runs it, decided once on the driver (Ray must be running) and passed
    down: the resources it leaves to the cluster sized from the connected Ray cluster
    (:func:`fv2es.compute.size_resources`, for the actor pools of the stages that run;
    ``model``: the job ends in the model stage), and with a model, ``score.precision`` resolved
    (``auto`` -> ``fp32`` or ``bf16`` on the model's device: what the job records). Logs the sizing.
    ``shape``: ``(cpus, gpus)`` to size for instead, without Ray (:mod:`fv2es.pipeline.local`)."""
    from fv2es.compute import cluster_shape, describe, resolve_precision, size_resources

    cpus, gpus = shape or cluster_shape()
    pools = active_pools(cfg)
    sized = size_resources(cfg.resources, cpus, gpus, model=model, pools=list(pools))
    logging.getLogger(__name__).info("resources: " + describe(sized, cpus, gpus, model=model, pools=pools))
    cfg = dataclasses.replace(cfg, resources=sized)
    if model:
        device = "cuda" if sized.model_gpus > 0 else "cpu"
        cfg = dataclasses.replace(cfg, score=dataclasses.replace(
            cfg.score, precision=resolve_precision(cfg.score.precision, device)))
    return cfg


def active_pools(cfg: Config) -> dict[str, str]:
    """The actor pools of the media stages ``cfg`` runs (resources prefix -> title), in order."""
    return {stage.pool: stage.title for stage in MEDIA_STAGES if stage.pool and stage.enabled(cfg)}


def media_stages(job: MediaJob) -> list[StageSpec]:
    """The :data:`~fv2es.pipeline.stages.MEDIA_STAGES` that ``job`` runs, each as it declares
    itself (``Stage.spec``): decode -> (transcribe) -> spectrogram -> faces."""
    return [spec for stage in MEDIA_STAGES if (spec := stage.spec(job)) is not None]


def media_job(cfg: Config, segments: SegmentsConfig, storage_options: dict | None,
              asr_storage_options: dict | None = None) -> MediaJob:
    """The :class:`MediaJob` of a sized ``cfg`` (:func:`sized_config`) on the connected cluster."""
    from fv2es.compute import cluster_shape

    return MediaJob(cfg, segments, cluster_shape()[0], storage_options, asr_storage_options)


BLOCKS_FIRST, BLOCKS_LATER = 1024, 64  # most input blocks of a plan's first table; blocks of each later one
# A block is a decode task and one task of every later stage: Ray's scheduling of each (~30 ms, on the
# driver too: its streaming executor's cost grows with the blocks queued) is paid per block, which
# 20,000 fast failing inputs in 1,000 blocks of 20 paid 1,000 times (issue 21). So the first table is
# cut into this many blocks per decode task running at once: enough to keep each busy, and no more.
BLOCKS_PER_DECODE_TASK = 8


def block_size(rows: int, first: bool, decode_tasks: int | None) -> int:
    """Jobs per input block of a planned table of ``rows`` jobs (``first``: the plan's first).

    The first table (all of a small plan) is cut into :data:`BLOCKS_PER_DECODE_TASK` blocks per
    decode task that runs at once (``decode_tasks``), at least :data:`BLOCKS_LATER` and at most
    :data:`BLOCKS_FIRST`: one job a block up to that many jobs (parallelism over few long videos),
    then blocks of several, so that the blocks keep every decode slot busy and no more. Each later
    table of a big plan is cut into :data:`BLOCKS_LATER` (it has parallelism to spare, and every
    block costs Ray a task of its own before the pipeline starts)."""
    import math

    if not first:
        return max(1, math.ceil(rows / BLOCKS_LATER))
    blocks = min(BLOCKS_FIRST, max(BLOCKS_LATER, BLOCKS_PER_DECODE_TASK * (decode_tasks or 0)))
    return max(1, math.ceil(rows / blocks))


def build_dataset(jobs, stages: list[StageSpec]):
    """A streaming Ray Dataset: one row per job, through ``stages`` in order.

    ``jobs``: job dicts, or job tables (:func:`fv2es.pipeline.plan.iter_jobs`, any iterable of
    them: each is put into Ray's object store as it comes, so the driver holds one at a time).
    A block of jobs is what one decode task takes (:func:`block_size`: the decode stage's tasks
    at once size the first table's blocks).
    """
    import pyarrow as pa
    import ray

    from fv2es.pipeline.plan import job_table

    if isinstance(jobs, pa.Table):
        jobs = [jobs]
    elif isinstance(jobs, list) and (not jobs or isinstance(jobs[0], dict)):
        jobs = [job_table(jobs)]
    decode_tasks = next((s.tasks for s in stages if s.name == "decode"), None)
    refs = []
    for table in jobs:
        if not table.num_rows:
            continue
        size = block_size(table.num_rows, not refs, decode_tasks)
        refs += [ray.put(table.slice(i, size)) for i in range(0, table.num_rows, size)]
    ds = ray.data.from_arrow_refs(refs) if refs else ray.data.from_items([])
    for s in stages:
        if s.actors:
            ds = ds.map_batches(s.cls, fn_constructor_args=s.args, fn_constructor_kwargs=s.kwargs,
                                batch_size=s.batch_size, batch_format="pyarrow", compute=pool_strategy(s),
                                num_cpus=s.cpus, num_gpus=s.gpus)
        else:
            ds = ds.map_batches(s.cls(*s.args, **s.kwargs), batch_size=s.batch_size, batch_format="pyarrow",
                                num_cpus=s.cpus, concurrency=s.tasks)
    return ds


def pool_strategy(spec: StageSpec):
    """The Ray Data compute strategy of an actor stage: an elastic pool of ``spec.actors`` to
    ``spec.max_actors`` actors (Ray Data adds actors while the stage is the bottleneck and the
    cluster, or its autoscaler, has room), or a fixed pool when the two are equal."""
    import ray

    high = max(spec.actors, spec.max_actors or spec.actors)
    if high == spec.actors:
        return ray.data.ActorPoolStrategy(size=spec.actors)
    return ray.data.ActorPoolStrategy(min_size=spec.actors, max_size=high)


def media_dataset(jobs, job: MediaJob):
    """:func:`build_dataset` of :func:`media_stages`: job rows -> face-cropped segment rows."""
    return build_dataset(jobs, media_stages(job))
