"""How much compute each stage gets, and at which precision.

Two decisions are made here, once, from what the machine or the Ray cluster has:

- the model's compute precision (:func:`resolve_precision`): ``auto`` is bf16 on CUDA with bf16
  support and on CPUs with native bf16 instructions (``avx512_bf16`` or ``amx_bf16``), else fp32.
  Without those instructions bf16 is emulated and runs slower than fp32 (measured: BENCHMARKS.md);
- the resources of the media pipeline's stages (:func:`size_resources`): actor pool sizes, CPUs
  reserved, torch threads and the model's batch budget, from the cluster's CPUs and GPUs. Every
  value a config sets explicitly (non-zero; ``-1`` for a GPU share) is kept as it is.

The CPU sizing keeps every core busy without the starvation trap of small clusters: actor pools
reserve at most about three quarters of the CPUs, so decode and spectrogram tasks always find a
slot (an actor pool that takes every CPU leaves the tasks feeding it unscheduled and the job
hangs). The model stage gets half of the CPUs and, on a machine of up to two cores, threads for
every core: it is the bottleneck there, and the other stages use little CPU while it runs.

Actor pools are elastic when the cluster can grow (``resources.max_cpus`` / ``max_gpus``, the
autoscaler's ceiling): each pool starts at the size the cluster has room for now and may grow,
actor by actor of the same shape, to its share of the ceiling (``<pool>_max_actors``). The shares
are the same fractions at either end, so a pool at its largest still leaves the decode and write
tasks their quarter; without a ceiling the pools stay fixed, as on a laptop.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

PRECISIONS = ("auto", "fp32", "bf16")
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # native bf16 dot products; without them bf16 is emulated

# The model's batch budget when the config leaves it to the device (spectrogram pieces and face
# frames per forward pass). A NesT-B piece costs ~11 GFLOP; 64 keep the GEMMs large on a CPU and
# the activations small (BENCHMARKS.md: memory bound).
CPU_BATCH_PIECES, CPU_BATCH_FRAMES = 64, 256
GPU_BATCH_PIECES, GPU_BATCH_FRAMES = 512, 2048
# Segments per model call. Ray Data hands the actor a call only once this many segments are
# ready, so on a CPU a small call starts the model (the bottleneck) sooner after start-up; the
# forward passes inside a call are bounded by the budget above either way (fv2es alone on the speed
# benchmark's 8 clips, 2 CPUs: 84, 85 s with 16; 77, 85 s with 4; BENCHMARKS.md). A GPU wants the
# bigger calls.
CPU_BATCH_SEGMENTS, GPU_BATCH_SEGMENTS = 4, 16


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this machine (``/proc/cpuinfo``; empty where there is none)."""
    path = Path("/proc/cpuinfo")
    if not path.exists():
        return frozenset()
    for line in path.read_text().splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX), by its flags or torch's view."""
    if any(flag in cpu_flags() for flag in CPU_BF16_FLAGS):
        return True
    import torch

    capability = str(torch.backends.cpu.get_cpu_capability()).upper()
    return "AMX" in capability or "BF16" in capability


def resolve_precision(setting: str, device: str = "cpu") -> str:
    """``fp32`` or ``bf16``: the precision ``setting`` (``auto`` | ``fp32`` | ``bf16``) means on ``device``."""
    if setting not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {setting!r}")
    if setting != "auto":
        return setting
    if str(device).startswith("cuda"):
        import torch

        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"
    return "bf16" if cpu_has_bf16() else "fp32"


def autocast_dtype(precision: str):
    """The torch dtype of a resolved precision (``fp32`` -> float32, ``bf16`` -> bfloat16)."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]


def cluster_shape() -> tuple[float, float]:
    """(CPUs, GPUs) of the connected Ray cluster."""
    import ray

    total = ray.cluster_resources()
    return float(total.get("CPU", 1.0)), float(total.get("GPU", 0.0))


def torch_threads(cpus: float, cluster_cpus: float) -> int:
    """Torch threads for a stage reserving ``cpus``: its whole CPUs, and every core on a machine
    of one or two (where it is the stage that computes and the others mostly wait)."""
    if cluster_cpus <= 2:
        return max(1, int(cluster_cpus))
    return max(1, math.ceil(cpus - 1e-9))


def size_resources(r, cpus: float, gpus: float, *, model: bool, pools: Sequence[str] = ("face", "asr")):
    """``r`` (a :class:`~fv2es.config.ResourcesConfig`) with every value left to the cluster
    (0 for counts and CPUs, -1 for GPU shares) filled in for ``cpus`` CPUs and ``gpus`` GPUs.

    ``model``: the model stage runs (scoring; preprocessing has none, and the face stage gets its
    share); ``pools``: the media stages' actor pools that run (their ``resources.<pool>_*`` field
    prefixes: ``face``, ``asr`` when speech-to-text runs, and any other a stage declares). Every
    pool but the compute-bound one (the model's, or without it the face stage's) is a side pool:
    the side pools share a quarter of the CPUs and half of each GPU. Idempotent: a sized config
    sizes to itself.
    """
    cpus = max(1.0, cpus)
    small = cpus <= 4
    values: dict = {}
    now_gpus = int(gpus)
    # A cluster that may gain GPUs is sized as one that has them: its GPU stages ask for one,
    # which is what makes the autoscaler add a GPU node (the job waits for it).
    gpus = max(gpus, getattr(r, "max_gpus", 0.0))

    def fill(name, value):
        if getattr(r, name) == (-1 if name.endswith("_gpus") else 0):
            values[name] = value

    side_pools = [p for p in pools if model or p != "face"]
    # GPUs: one model actor per GPU with half of it; the side pools share the rest (a quarter
    # each for two, less for more, so that no GPU is promised past its whole).
    whole_gpus = int(gpus)
    gpu_side = min(0.25, 0.5 / max(1, len(side_pools)))
    fill("model_gpus", 0.5 if whole_gpus and model else 0.0)
    if not model:
        fill("face_gpus", 0.5 if whole_gpus else 0.0)
    for p in side_pools:
        fill(f"{p}_gpus", gpu_side if whole_gpus else 0.0)
    gpu = {f"{p}_gpus": values.get(f"{p}_gpus", getattr(r, f"{p}_gpus")) for p in ("model", "face", *side_pools)}

    heavy = cpus / 2  # the compute-bound stage's share: the model's, or the face stage's without one
    # per side actor on CPU: an eighth of a small machine, up to one CPU, for two side pools (a
    # quarter of the CPUs in all); with more, that quarter is shared among them
    side = (min(1.0, cpus / 8) if not small else min(0.25, cpus / 8)) * 2 / max(2, len(side_pools))
    if model:
        if gpu["model_gpus"] > 0:
            fill("model_actors", max(1, now_gpus))
            fill("model_cpus", 1.0)
        else:
            fill("model_actors", max(1, int(heavy // 4)))
            fill("model_cpus", heavy / values.get("model_actors", r.model_actors))
        model_cpus = values.get("model_cpus", r.model_cpus)
        fill("model_threads", torch_threads(model_cpus, cpus) if gpu["model_gpus"] == 0 else 1)
        on_gpu = gpu["model_gpus"] > 0
        fill("model_batch_size", GPU_BATCH_SEGMENTS if on_gpu else CPU_BATCH_SEGMENTS)
        fill("model_batch_pieces", GPU_BATCH_PIECES if on_gpu else CPU_BATCH_PIECES)
        fill("model_batch_frames", GPU_BATCH_FRAMES if on_gpu else CPU_BATCH_FRAMES)
    else:
        fill("model_actors", 1)
        fill("model_cpus", 0.5)
        fill("model_threads", 1)
        fill("model_batch_size", CPU_BATCH_SEGMENTS)
        fill("model_batch_pieces", CPU_BATCH_PIECES)
        fill("model_batch_frames", CPU_BATCH_FRAMES)
        fill("face_actors", max(1, now_gpus) if gpu["face_gpus"] > 0 else max(1, int(heavy // 2)))
        fill("face_cpus", side if gpu["face_gpus"] > 0 else heavy / values.get("face_actors", r.face_actors))
    for p in side_pools:
        fill(f"{p}_actors", max(1, now_gpus) if gpu[f"{p}_gpus"] > 0 else max(1, round(cpus / 8)))
        fill(f"{p}_cpus", side)
    fill("decode_cpus", 0.25 if small else 0.5)  # fractional: several decodes beside the actors
    sized = dataclasses.replace(r, **values)
    every = (["model"] if model else []) + [p for p in pools if p not in side_pools] + side_pools
    # GPU pools grow in sets of one actor each (a set: 0.5 + 0.25 + 0.25 of a GPU when sized here)
    gpu_set = sum(getattr(sized, f"{p}_gpus") for p in every if getattr(sized, f"{p}_gpus") > 0)
    ceiling = {}
    for p in every:
        if getattr(r, f"{p}_max_actors", None) != 0:  # set by the config, or a pool without the field
            continue
        actors = getattr(sized, f"{p}_actors")
        if getattr(sized, f"{p}_gpus") > 0:  # as many sets as the ceiling's GPUs hold
            ceiling[f"{p}_max_actors"] = max(actors, int(gpus / gpu_set + 1e-9))
        else:  # the same share of the ceiling's CPUs, in actors of the same size
            ceiling[f"{p}_max_actors"] = max(actors, int(actors * max(cpus, getattr(r, "max_cpus", 0.0)) / cpus + 1e-9))
    return dataclasses.replace(sized, **ceiling)


def decode_tasks(r, cpus: float, pools: Sequence[str] = ("face", "asr")) -> int:
    """Decode tasks at most at once: as many as the CPUs hold at ``r.decode_cpus`` each (at least 2).

    The cap is also what keeps decoding a stage of its own: Ray Data fuses a task stage with no
    cap (or one equal to the pool's size) into the actor stage after it, where every decode would
    run one at a time inside that stage's actor (the speech-to-text or face actor)."""
    cpus = max(cpus, getattr(r, "max_cpus", 0.0))  # a growing cluster decodes on its new nodes too
    tasks = max(2, int(max(1.0, cpus) / max(r.decode_cpus, 0.01) + 1e-9))
    sizes = {getattr(r, f"{p}_{k}", 0) for p in pools for k in ("actors", "max_actors")}
    while tasks in sizes:
        tasks += 1
    return tasks


def describe(r, cpus: float, gpus: float, *, model: bool, pools: Mapping[str, str]) -> str:
    """One line naming the sizing of ``r`` (sized) on a cluster of ``cpus`` / ``gpus``; ``pools``:
    the actor pools that run (field prefix -> what to call it), in pipeline order."""
    parts = [f"cluster {cpus:g} CPUs, {gpus:g} GPUs",
             f"decode tasks {r.decode_cpus:g} CPU (<= {decode_tasks(r, cpus, list(pools))} at once)"]
    for p, title in pools.items():
        actors, pool_cpus, pool_gpus = (getattr(r, f"{p}_{k}") for k in ("actors", "cpus", "gpus"))
        parts.append(f"{title} {_count(actors, getattr(r, f'{p}_max_actors', 0))}x({pool_cpus:g} CPU{_gpu(pool_gpus)})")
    if model:
        parts.append(f"model {_count(r.model_actors, r.model_max_actors)}x({r.model_cpus:g} CPU{_gpu(r.model_gpus)}, "
                     f"{r.model_threads} threads, "
                     f"<= {r.model_batch_size} segments / {r.model_batch_pieces} pieces / "
                     f"{r.model_batch_frames} frames per forward)")
    return "; ".join(parts)


def _count(actors: int, most: int) -> str:
    """``2`` for a fixed pool, ``2-8`` for an elastic one."""
    return f"{actors}-{most}" if most > actors else f"{actors}"


def _gpu(share: float) -> str:
    return f", {share:g} GPU" if share > 0 else ""


def train_precision(train, device: str) -> str:
    """A training worker's precision (``fp32`` | ``bf16``): ``train.precision`` on ``device``;
    ``train.bf16: false`` (older configs) forces fp32."""
    return resolve_precision(train.precision, device) if train.bf16 else "fp32"


def train_threads(worker_cpus: float, node_cpus: int, local_workers: int) -> int:
    """Torch threads of a training worker on CPU: its node's cores shared evenly among the node's
    workers (they are the compute; Ray Data's shard reads are light), at least its reservation."""
    return max(1, math.ceil(worker_cpus - 1e-9), node_cpus // max(1, local_workers))
