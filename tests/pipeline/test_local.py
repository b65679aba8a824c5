"""fv2es.pipeline.local: a job's stage list run in this process, in order, on batches of each
stage's size. That its rows are the ones a job on Ray writes is checked beside a real scoring
job (tests/score/test_score_job.py::test_manifest_segments_are_scored_as_given)."""

import dataclasses

import pyarrow as pa
import pytest

from fv2es.config import config_from_dict
from fv2es.media.democorpus import make_demo_corpus
from fv2es.pipeline.dataset import media_stages
from fv2es.pipeline.local import local_job, run_stages
from fv2es.pipeline.packing import unpack_faces, unpack_pieces
from fv2es.pipeline.plan import iter_jobs
from fv2es.pipeline.spec import StageSpec


class Tag:
    """A stage that appends ``name`` = the size of the batch it was called on."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, batch: pa.Table) -> pa.Table:
        return batch.append_column(self.name, pa.array([batch.num_rows] * batch.num_rows))


class Rows:
    """A stage that yields each row as a table of its own (as decode yields a table per chunk)."""

    def __call__(self, batch: pa.Table):
        for i in range(batch.num_rows):
            yield batch.slice(i, 1)


def test_stages_run_in_order_on_batches_of_their_size():
    table = pa.table({"x": list(range(5))})
    out = run_stages(table, [StageSpec("a", Tag, ("a",), batch_size=2), StageSpec("rows", Rows, batch_size=None),
                             StageSpec("b", Tag, ("b",), batch_size=3), StageSpec("c", Tag, ("c",))])
    assert out.column("x").to_pylist() == [0, 1, 2, 3, 4]
    assert out.column("a").to_pylist() == [2, 2, 2, 2, 1]  # batches of 2: the last one shorter
    assert out.column("b").to_pylist() == [3, 3, 3, 2, 2]
    assert out.column("c").to_pylist() == [5] * 5  # no batch size: the whole table at once
    assert run_stages([{"x": 1}], [StageSpec("a", Tag, ("a",), batch_size=4)]).to_pylist() == [{"x": 1, "a": 1}]
    assert run_stages(table.slice(0, 0), [StageSpec("a", Tag, ("a",), batch_size=2)]).num_rows == 0


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_demo_corpus(root, videos=2, seed=1, seconds=(2.0, 2.0))
    (root / "broken.mp4").write_bytes(b"not a video at all")
    return root


@pytest.fixture(scope="module")
def cfg():
    cfg = config_from_dict({"model": {"preset": "fv2es_tiny"}, "decode": {"max_side": 320}})
    return dataclasses.replace(cfg, asr=dataclasses.replace(cfg.asr, mode="never"))


def test_the_media_stages_of_a_job_in_this_process(demo, cfg):
    job = local_job(cfg, cfg.segments)
    assert [s.name for s in media_stages(job)] == ["decode", "speakers", "spectrogram", "faces"]
    assert job.cfg.resources.face_actors >= 1 and job.cluster_cpus == 2.0  # sized as on 2 CPUs, without Ray
    rows = run_stages(pa.concat_tables(iter_jobs(str(demo), cfg.score)), media_stages(job)).to_pylist()
    by_name = {r["video_uri"].rsplit("/", 1)[1]: r for r in rows}
    assert sorted(by_name) == ["broken.mp4", "clip_00000.mp4", "clip_00001.mp4"]
    assert by_name["broken.mp4"]["status"] == "invalid_container" and by_name["broken.mp4"]["faces_found"] == 0
    for name in ("clip_00000.mp4", "clip_00001.mp4"):
        row = by_name[name]
        assert row["status"] == "ok" and row["faces_found"] >= 3
        assert unpack_faces(row["faces"]).shape == (row["frames_sampled"], 48, 48, 3)
        assert unpack_pieces(row["pieces"]).shape == (row["piece_count"], 4, 32, 32)
