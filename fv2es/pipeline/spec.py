"""What a pipeline stage declares about itself, and the job context it builds its run from.

A stage class of the media pipeline carries, beside its ``__call__``:

- ``name``: its name in logs and plans;
- ``config_sections``: the sections of :class:`~fv2es.config.Config` its output depends on (the
  scoring job's config digest is made of them: a resume with other values is refused);
- ``pool``: for an actor pool, the prefix of its ``resources.<pool>_actors`` / ``_cpus`` / ``_gpus``
  / ``_batch_size`` fields, which :func:`fv2es.compute.size_resources` sizes; ``None`` for tasks;
- ``title``: what the sizing line calls its pool;
- ``columns`` and ``timing``: the score table's columns it contributes (``timing`` its ``*_ms``);
- ``enabled(cfg)``: whether a job with that config runs it;
- ``spec(job)``: its :class:`StageSpec` for a job (``None`` when it does not run).

So a new stage is its class, its media code and one entry in
:data:`fv2es.pipeline.stages.MEDIA_STAGES` (plus its config section and resource fields).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StageSpec:
    """One per-batch stage: ``cls(*args, **kwargs)`` is called on pyarrow tables.

    With ``actors`` > 0 it runs as an actor pool of that size, or of ``actors`` to ``max_actors``
    (state built once per actor, e.g. a model); with 0 as stateless tasks (the instance is built here and shipped to each task).
    """

    name: str
    cls: type
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    batch_size: int | None = None  # rows per call; None: a whole block
    cpus: float = 1.0  # CPUs reserved per task or actor
    gpus: float = 0.0  # GPUs reserved per actor
    actors: int = 0  # 0: tasks; n: an actor pool of n
    max_actors: int = 0  # an elastic pool grows from ``actors`` up to this many (0 or ``actors``: a fixed pool)
    tasks: int | None = None  # tasks at most at once (task stages); None: as many as the CPUs allow


@dataclass(frozen=True)
class MediaJob:
    """What a stage needs to build its run: the job's config with its resources sized (once per
    job: :func:`fv2es.pipeline.dataset.sized_config`), the segment plan, storage options."""

    cfg: Any  # fv2es.config.Config, resources sized
    segments: Any  # fv2es.config.SegmentsConfig: scoring's own, or preprocessing's (whole utterances)
    cluster_cpus: float
    storage_options: dict | None = None  # the inputs' (a local manifest may list s3:// videos)
    asr_storage_options: dict | None = None  # the speech model's


def actor_spec(stage: type, job: MediaJob, args: tuple = (), kwargs: dict | None = None) -> StageSpec:
    """The :class:`StageSpec` of an actor-pool stage, with the sized ``resources.<stage.pool>_*`` fields."""
    r, p = job.cfg.resources, stage.pool
    return StageSpec(stage.name, stage, args, kwargs or {}, batch_size=getattr(r, f"{p}_batch_size"),
                     cpus=getattr(r, f"{p}_cpus"), gpus=getattr(r, f"{p}_gpus"), actors=getattr(r, f"{p}_actors"),
                     max_actors=getattr(r, f"{p}_max_actors", 0))
