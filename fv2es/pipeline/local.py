"""The media pipeline without Ray: the same stage list, applied in order to a pyarrow table in
this process.

Jobs run their :class:`~fv2es.pipeline.spec.StageSpec` list on Ray Data
(:func:`fv2es.pipeline.dataset.build_dataset`); :func:`run_stages` runs that very list here, each
stage built as Ray builds it (``spec.cls(*spec.args, **spec.kwargs)``) and called on batches of
``spec.batch_size`` rows (the whole table when None), for row-level checks of what the stages
make (the tests) and a look at a few rows by hand. :func:`local_job` sizes a job's resources as a
cluster of the given shape would, without asking Ray.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa

from fv2es.pipeline.spec import MediaJob, StageSpec


def local_job(cfg, segments, *, model: bool = False, cpus: float = 2.0, gpus: float = 0.0,
              storage_options: dict | None = None, asr_storage_options: dict | None = None) -> MediaJob:
    """The :class:`MediaJob` of ``cfg`` (a :class:`~fv2es.config.Config`) sized as a job on a
    cluster of ``cpus`` CPUs and ``gpus`` GPUs would size it (``model``: the job ends in the model
    stage), without Ray (:func:`fv2es.pipeline.dataset.sized_config`); ``segments`` is the plan."""
    from fv2es.pipeline.dataset import sized_config

    sized = sized_config(cfg, model=model, shape=(cpus, gpus))
    return MediaJob(sized, segments, cpus, storage_options, asr_storage_options)


def run_stages(rows: pa.Table | list[dict], stages: Iterable[StageSpec]) -> pa.Table:
    """``rows`` (job rows) through ``stages`` in order, in this process; the last stage's rows."""
    table = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(rows)
    for spec in stages:
        stage = spec.cls(*spec.args, **spec.kwargs)
        parts = [out for batch in _batches(table, spec.batch_size) for out in _tables(stage(batch))]
        parts = [t for t in parts if t.num_rows]
        table = pa.concat_tables(parts, promote_options="permissive") if parts else pa.table({})
    return table


def _batches(table: pa.Table, batch_size: int | None) -> Iterator[pa.Table]:
    if not batch_size:
        yield table
        return
    for start in range(0, table.num_rows, batch_size):
        yield table.slice(start, batch_size)


def _tables(out) -> Iterator[pa.Table]:
    """A stage's result as tables: a stage returns one, or yields several (decode, per chunk)."""
    if isinstance(out, pa.Table):
        yield out
    else:
        yield from out
