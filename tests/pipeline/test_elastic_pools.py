"""Elastic actor pools (fv2es.compute.size_resources with a ceiling): a pool starts at what the
cluster holds now and may grow to its share of the ceiling, never past the CPUs that the decode
and write tasks need, and a cluster that may gain GPUs asks for one."""

import dataclasses

import pytest

from fv2es.compute import decode_tasks, describe, size_resources
from fv2es.config import ResourcesConfig

POOLS = ("face", "asr")


def pool_cpus(r, which: str) -> float:
    return sum(getattr(r, f"{p}_{which}") * getattr(r, f"{p}_cpus") for p in ("model", *POOLS))


@pytest.mark.parametrize(("cpus", "ceiling"), [(2, 0), (2, 2), (2, 64), (4, 16), (8, 128), (16, 16)])
def test_pools_grow_to_the_same_share_of_the_ceiling(cpus, ceiling):
    r = size_resources(ResourcesConfig(max_cpus=ceiling), cpus, 0, model=True, pools=POOLS)
    top = max(cpus, ceiling)
    assert pool_cpus(r, "actors") <= 0.75 * cpus  # at the start: room for decode and write tasks
    assert pool_cpus(r, "max_actors") <= 0.75 * top  # at the ceiling: the same
    for p in ("model", *POOLS):
        assert getattr(r, f"{p}_max_actors") >= getattr(r, f"{p}_actors") >= 1
    if ceiling <= cpus:  # no room to grow: fixed pools, as before
        assert all(getattr(r, f"{p}_max_actors") == getattr(r, f"{p}_actors") for p in ("model", *POOLS))
    else:
        assert r.model_max_actors * r.model_cpus == pytest.approx(top / 2, rel=0.3)
    assert size_resources(r, cpus, 0, model=True, pools=POOLS) == r  # idempotent
    assert decode_tasks(r, cpus) >= int(top / r.decode_cpus)  # decodes may use the new nodes


def test_a_cluster_that_may_gain_gpus_asks_for_one():
    r = size_resources(ResourcesConfig(max_cpus=64, max_gpus=4), 4, 0, model=True, pools=POOLS)
    assert (r.model_actors, r.model_max_actors, r.model_gpus) == (1, 4, 0.5)
    assert r.face_gpus > 0 and (r.face_actors, r.face_max_actors) == (1, 4)
    assert "model 1-4x" in describe(r, 4, 0, model=True, pools={"face": "faces", "asr": "speech-to-text"})


def test_explicit_maxima_cap_the_spend():
    r = size_resources(ResourcesConfig(max_cpus=256, model_max_actors=3, face_max_actors=1), 8, 0, model=True,
                       pools=POOLS)
    assert (r.model_max_actors, r.face_max_actors) == (3, 1) and r.asr_max_actors > r.asr_actors


def test_a_stage_spec_carries_the_pool_bounds():
    from fv2es.pipeline.dataset import pool_strategy
    from fv2es.pipeline.spec import StageSpec

    fixed = pool_strategy(StageSpec("m", object, actors=2))
    elastic = pool_strategy(StageSpec("m", object, actors=2, max_actors=6))
    assert (fixed.min_size, fixed.max_size) == (2, 2) and (elastic.min_size, elastic.max_size) == (2, 6)


def test_a_pool_without_a_max_field_is_left_fixed():
    @dataclasses.dataclass(frozen=True)
    class WithSpeaker(ResourcesConfig):
        speaker_actors: int = 0
        speaker_cpus: float = 0.0
        speaker_gpus: float = -1.0

    r = size_resources(WithSpeaker(max_cpus=32), 2, 0, model=True, pools=(*POOLS, "speaker"))
    assert r.speaker_actors == 1 and not hasattr(r, "speaker_max_actors") and r.model_max_actors > 1


def test_gpu_pools_grow_in_sets_that_fit_the_ceiling():
    """Explicit GPU shares (the KubeRay job's: a whole GPU per model actor, half for the others)
    grow only as far as the ceiling's GPUs hold one actor of each."""
    r = size_resources(ResourcesConfig(model_gpus=1, face_gpus=0.5, asr_gpus=0.5, max_cpus=12, max_gpus=4), 1, 0,
                       model=True, pools=POOLS)
    assert (r.model_actors, r.face_actors, r.asr_actors) == (1, 1, 1)
    assert (r.model_max_actors, r.face_max_actors, r.asr_max_actors) == (2, 2, 2)
    assert sum(getattr(r, f"{p}_max_actors") * getattr(r, f"{p}_gpus") for p in ("model", *POOLS)) <= 4
