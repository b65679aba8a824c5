"""Resources sized from the cluster (fv2es.compute) and the model's precision."""

from __future__ import annotations

import dataclasses

import pytest

from fv2es.compute import (
    autocast_dtype,
    cpu_has_bf16,
    resolve_precision,
    size_resources,
    train_threads,
)
from fv2es.config import ResourcesConfig, load_config
from fv2es.errors import ConfigError


def actors_cpus(r, model=True, asr=True) -> float:
    return (r.model_actors * r.model_cpus * model + r.face_actors * r.face_cpus
            + r.asr_actors * r.asr_cpus * asr)


def test_two_cpus_give_the_model_the_compute_and_leave_room_for_tasks():
    r = size_resources(ResourcesConfig(), 2, 0, model=True, pools=("face", "asr"))
    assert (r.model_actors, r.model_cpus, r.model_threads, r.model_gpus) == (1, 1.0, 2, 0.0)
    assert (r.face_actors, r.face_cpus, r.asr_actors, r.asr_cpus) == (1, 0.25, 1, 0.25)
    assert r.decode_cpus == 0.25 and 2 - actors_cpus(r) >= 2 * r.decode_cpus  # two decodes beside the actors
    assert (r.model_batch_size, r.model_batch_pieces, r.model_batch_frames) == (4, 64, 256)


@pytest.mark.parametrize("cpus", [1, 2, 3, 4, 8, 16, 64])
@pytest.mark.parametrize("model", [True, False])
def test_actor_pools_never_take_every_cpu(cpus, model):
    r = size_resources(ResourcesConfig(), cpus, 0, model=model, pools=("face", "asr"))
    assert actors_cpus(r, model) <= 0.75 * cpus  # the rest for decode and spectrogram tasks
    assert r.decode_cpus <= cpus - actors_cpus(r, model)
    assert size_resources(r, cpus, 0, model=model, pools=("face", "asr")) == r  # idempotent
    if model:
        assert r.model_actors * r.model_cpus == pytest.approx(cpus / 2)  # the model stage's half
        assert r.model_threads >= 1 and r.model_actors >= max(1, cpus // 8)


def test_explicit_values_win():
    explicit = ResourcesConfig(model_actors=3, model_cpus=0.5, model_threads=1, model_gpus=0.0,
                               model_batch_pieces=8, decode_cpus=1.0, face_gpus=0.0)
    r = size_resources(explicit, 8, 2, model=True, pools=("face",))
    assert (r.model_actors, r.model_cpus, r.model_threads, r.model_gpus) == (3, 0.5, 1, 0.0)
    assert (r.model_batch_pieces, r.decode_cpus, r.face_gpus) == (8, 1.0, 0.0)
    assert (r.model_batch_frames, r.model_batch_size) == (256, 4)  # left to the cluster: the CPU's
    assert size_resources(ResourcesConfig(model_batch_size=32), 2, 0, model=True, pools=("face",)).model_batch_size == 32


def test_gpus_take_the_model_and_the_face_stage():
    r = size_resources(ResourcesConfig(), 16, 4, model=True, pools=("face", "asr"))
    assert (r.model_actors, r.model_gpus, r.model_threads) == (4, 0.5, 1)
    assert (r.face_actors, r.face_gpus, r.asr_actors, r.asr_gpus) == (4, 0.25, 4, 0.25)
    assert r.model_actors * r.model_gpus + r.face_actors * r.face_gpus + r.asr_actors * r.asr_gpus <= 4
    assert (r.model_batch_size, r.model_batch_pieces) == (16, 512)


def test_config_refuses_bad_resources_and_precision():
    with pytest.raises(ConfigError, match="resources.model_cpus must be >= 0"):
        load_config(None, ["resources.model_cpus=-1"])
    with pytest.raises(ConfigError, match="resources.model_gpus must be >= 0 .-1: sized from the cluster"):
        load_config(None, ["resources.model_gpus=-0.5"])
    with pytest.raises(ConfigError, match="score.precision: 'fp16' is not one of auto, fp32, bf16"):
        load_config(None, ["score.precision=fp16"])
    assert load_config(None, ["train.precision=bf16"]).train.precision == "bf16"


def test_precision():
    import torch

    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16", "cpu") == "bf16"
    assert resolve_precision("auto", "cpu") == ("bf16" if cpu_has_bf16() else "fp32")
    assert autocast_dtype("bf16") == torch.bfloat16 and autocast_dtype("fp32") == torch.float32
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_precision("fp16")


def test_train_threads_share_the_node():
    assert train_threads(1.0, 2, 1) == 2  # one worker on a 2-core node: both cores
    assert train_threads(0.5, 2, 2) == 1
    assert train_threads(4.0, 16, 4) == 4 and train_threads(2.0, 2, 2) == 2


def test_a_third_side_pool_shares_the_side_budget():
    """A stage that declares a new actor pool gets sized without changes here, and the side
    pools together never take more CPUs or GPU than two did."""
    @dataclasses.dataclass(frozen=True)
    class WithSpeaker(ResourcesConfig):
        speaker_actors: int = 0
        speaker_cpus: float = 0.0
        speaker_gpus: float = -1.0

    pools = ("face", "asr", "speaker")
    r = size_resources(WithSpeaker(), 2, 0, model=True, pools=pools)
    side = sum(getattr(r, f"{p}_actors") * getattr(r, f"{p}_cpus") for p in pools)
    assert side == pytest.approx(0.5) and r.model_actors * r.model_cpus + side <= 0.75 * 2
    g = size_resources(WithSpeaker(), 16, 4, model=True, pools=pools)
    assert g.speaker_actors == 4 and g.model_gpus + sum(getattr(g, f"{p}_gpus") for p in pools) <= 1.0


@pytest.mark.parametrize("asr_mode", ["auto", "never"])
def test_each_stage_builds_its_run_from_the_job_sized_once(asr_mode):
    """The stage list is what runs: each stage's spec takes its resources from the sized fields."""
    from fv2es.pipeline.dataset import active_pools, media_stages
    from fv2es.pipeline.spec import MediaJob
    from fv2es.score.model_stage import ModelStage

    cfg = load_config(None, [f"asr.mode={asr_mode}"])
    cfg = dataclasses.replace(cfg, resources=size_resources(cfg.resources, 2, 0, model=True,
                                                            pools=list(active_pools(cfg))))
    job = MediaJob(cfg, cfg.segments, 2.0)
    specs = [*media_stages(job), ModelStage.spec(job, "ckpt.safetensors", None)]
    names = ["decode", "speakers", *(["transcribe"] if asr_mode == "auto" else []), "spectrogram", "faces", "model"]
    assert [s.name for s in specs] == names
    by_name = {s.name: s for s in specs}
    r = cfg.resources
    assert (by_name["faces"].actors, by_name["faces"].cpus, by_name["faces"].batch_size) == (
        r.face_actors, r.face_cpus, r.face_batch_size)
    assert (by_name["model"].actors, by_name["model"].cpus, by_name["model"].kwargs["threads"]) == (1, 1.0, 2)
    assert by_name["decode"].actors == 0 and by_name["decode"].tasks == 8  # 2 CPUs at 0.25 each
    assert ("asr_actors" in r.__dataclass_fields__) and (r.asr_actors == 1) == (asr_mode == "auto")


def test_a_plan_s_blocks_keep_the_decode_tasks_busy_and_no_more():
    """The first planned table is cut into 8 blocks a decode task (at least 64, at most 1,024):
    one job a block for a small plan, a few hundred jobs a block for 20,000 on 2 CPUs (8 tasks),
    where 1,000 blocks of 20 paid Ray's per-block cost 1,000 times; later tables into 64."""
    import math

    from fv2es.pipeline.dataset import block_size

    def blocks(rows, first=True, tasks=8):
        return math.ceil(rows / block_size(rows, first, tasks))

    assert [block_size(n, True, 8) for n in (1, 10, 64)] == [1, 1, 1]
    assert [blocks(n) for n in (100, 1_000, 2_000, 20_000, 50_000)] == [50, 63, 63, 64, 64]
    assert block_size(20_000, True, 8) == 313 and block_size(20_000, True, None) == 313
    assert blocks(100, tasks=300) == 100 and blocks(20_000, tasks=300) == 1_000  # a big cluster: up to 1,024
    assert blocks(5_000, tasks=1_000) == 1_000 and block_size(50_000, False, 300) == 782  # later tables: 64
