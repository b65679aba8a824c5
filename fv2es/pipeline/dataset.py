"""The Ray side of the media pipeline: the embedded-or-cluster Ray, the list of stages, and job
rows -> segment rows as a streaming Dataset (the scoring and preprocessing jobs both start here).

The stages are data: :func:`media_stages` lists them (class, constructor arguments, batch size,
resources) and :func:`build_dataset` chains whatever list it is given. A new stage between
decode and the model is one more :class:`StageSpec` in :func:`media_stages`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Any

from fv2es.config import Config, SegmentsConfig
from fv2es.errors import ConfigError, UserError
from fv2es.pipeline.stages import Decode, Faces, Spectrogram, Transcribe
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


@dataclass(frozen=True)
class StageSpec:
    """One per-batch stage: ``cls(*args, **kwargs)`` is called on pyarrow tables.

    With ``actors`` > 0 it runs as an actor pool of that size (state built once per actor, e.g.
    a model); with 0 as stateless tasks (the instance is built here and shipped to each task).
    """

    name: str
    cls: type
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None  # rows per call; None: a whole block
    cpus: float = 1.0  # CPUs reserved per task or actor
    gpus: float = 0.0  # GPUs reserved per actor
    actors: int = 0  # 0: tasks; n: an actor pool of n
    tasks: int | None = None  # tasks at most at once (task stages); None: as many as the CPUs allow


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


def sized_config(cfg: Config, *, model: bool) -> Config:
    """``cfg`` with the resources it leaves to the cluster sized from the connected Ray cluster
    (:func:`fv2es.compute.size_resources`; ``model``: the job ends in the model stage). Logs the
    sizing; a config already sized is returned as it is."""
    from fv2es.compute import cluster_shape, describe, size_resources

    cpus, gpus = cluster_shape()
    asr = cfg.asr.mode != "never"
    sized = size_resources(cfg.resources, cpus, gpus, model=model, asr=asr)
    if sized == cfg.resources:
        return cfg
    logging.getLogger(__name__).info("resources: " + describe(sized, cpus, gpus, model=model, asr=asr))
    return dataclasses.replace(cfg, resources=sized)


def media_stages(cfg: Config, segments: SegmentsConfig, storage_options: dict | None,
                 asr_storage_options: dict | None = None) -> list[StageSpec]:
    """Decode -> (transcribe) -> spectrogram -> faces, with the resources of ``cfg.resources``
    (values left to the cluster are sized first: :func:`sized_config`; Ray must be running).

    ``segments`` is the plan (scoring passes ``cfg.segments``; preprocessing its own);
    ``storage_options`` are the inputs', ``asr_storage_options`` the speech model's. The
    transcription stage is there unless ``asr.mode`` is ``never``; it and the face stage run on
    CUDA when given GPUs.
    """
    from fv2es.compute import cluster_shape, decode_tasks

    r = sized_config(cfg, model=False).resources
    faces = cfg.faces if r.face_gpus == 0 else dataclasses.replace(cfg.faces, device="cuda")
    stages = [StageSpec("decode", Decode, (cfg.decode, segments, r, storage_options, cfg.asr.mode),
                        batch_size=1, cpus=r.decode_cpus, tasks=decode_tasks(r, cluster_shape()[0]))]
    if cfg.asr.mode != "never":
        stages.append(StageSpec(
            "transcribe", Transcribe, (cfg.asr, segments, cfg.decode.sample_rate),
            {"device": "cuda" if r.asr_gpus > 0 else "cpu", "threads": max(1, round(r.asr_cpus)),
             "storage_options": options_for(cfg.asr.model, asr_storage_options)},
            batch_size=r.asr_batch_size, cpus=r.asr_cpus, gpus=r.asr_gpus, actors=r.asr_actors))
    stages.append(StageSpec("spectrogram", Spectrogram, (cfg.spectrogram,), cpus=r.spectrogram_cpus))
    stages.append(StageSpec("faces", Faces, (faces, max(1, round(r.face_cpus))), batch_size=r.face_batch_size,
                            cpus=r.face_cpus, gpus=r.face_gpus, actors=r.face_actors))
    return stages


def build_dataset(jobs: list[dict], stages: list[StageSpec]):
    """A streaming Ray Dataset: one row per job, through ``stages`` in order."""
    import ray

    ds = ray.data.from_items(jobs, override_num_blocks=min(len(jobs), 4096))
    for s in stages:
        if s.actors:
            ds = ds.map_batches(s.cls, fn_constructor_args=s.args, fn_constructor_kwargs=s.kwargs,
                                batch_size=s.batch_size, batch_format="pyarrow",
                                compute=ray.data.ActorPoolStrategy(size=s.actors), num_cpus=s.cpus, num_gpus=s.gpus)
        else:
            ds = ds.map_batches(s.cls(*s.args, **s.kwargs), batch_size=s.batch_size, batch_format="pyarrow",
                                num_cpus=s.cpus, concurrency=s.tasks)
    return ds


def media_dataset(jobs: list[dict], cfg: Config, segments: SegmentsConfig, storage_options: dict | None,
                  asr_storage_options: dict | None = None):
    """:func:`build_dataset` of :func:`media_stages`: job rows -> face-cropped segment rows."""
    return build_dataset(jobs, media_stages(cfg, segments, storage_options, asr_storage_options))
