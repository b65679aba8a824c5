"""The scoring output's commit rules (fv2es.score.output), once per part format and per store.

Every test runs over every registered part format, and over an Arrow IPC format written here
(so a rule that leaned on Parquet would fail), on local disk and on fsspec's in-memory store:
no Ray, no media, a few milliseconds each.
"""

import json
import time
import uuid

import pyarrow as pa
import pytest
from fsspec.core import url_to_fs

from fv2es.pipeline.plan import job_id
from fv2es.score.formats import PART_FORMATS
from fv2es.score.lease import LEASE, LeaseLost
from fv2es.score.output import MODEL, SUCCESS, OutputMismatch, OutputWriteError, ScoreOutput

META = {"fv2es.model_id": "model-a", "fv2es.emotions": json.dumps(["hap", "sad"])}
SCHEMA = pa.schema([("video_uri", pa.string()), ("speaker_side", pa.string()), ("job_id", pa.string()),
                    ("segment_index", pa.int32()), ("prob_hap", pa.float64()), ("status", pa.string()),
                    ("error", pa.string())])


class ArrowIpcFormat:
    """A second format, for these tests only: Arrow's IPC file, metadata on its schema."""

    suffix = ".arrow"

    def write(self, table, f, metadata):
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
        with pa.ipc.new_file(f, table.schema) as writer:
            writer.write_table(table)

    def read(self, f, columns=None):
        table = pa.ipc.open_file(f).read_all()
        return table if columns is None else table.select(columns)

    def read_schema(self, f):
        return pa.ipc.open_file(f).schema


FORMATS = {**PART_FORMATS, "arrow-ipc": ArrowIpcFormat()}


@pytest.fixture(params=sorted(FORMATS))
def part_format(request):
    return FORMATS[request.param]


@pytest.fixture(params=["local", "memory"])
def uri(request, tmp_path):
    if request.param == "local":
        yield str(tmp_path / "out")
        return
    uri = f"memory://fv2es-{uuid.uuid4().hex[:8]}/out"
    yield uri
    fs, root = url_to_fs(uri)
    if fs.exists(root):
        fs.rm(root, recursive=True)


@pytest.fixture
def output_of(uri, part_format):
    """A function making a ScoreOutput (a new run each call) on this test's store and format."""
    runs = iter(range(1, 100))

    def make(**kw):
        output = ScoreOutput(uri, metadata=kw.pop("metadata", META), backoff_s=0.0, part_format=part_format, **kw)
        # Runs started within one second would sort by their random suffix: these sort as started.
        output.run_id = f"{output.run_id[:15]}-run{next(runs):02d}"
        return output

    return make


def rows(jobs: dict[str, str], segments: int = 2, prob: float = 0.5) -> pa.Table:
    """``segments`` rows of each job in ``jobs`` (job id -> status), one video per job."""
    return pa.Table.from_pylist([
        {"video_uri": f"v/{job}.mp4", "speaker_side": None, "job_id": job, "segment_index": i, "prob_hap": prob,
         "status": status, "error": "" if status == "ok" else f"{status}: boom"}
        for job, status in jobs.items() for i in range(segments)], schema=SCHEMA)


def names(paths):
    return [p.rsplit("/", 1)[-1] for p in paths]


def test_parts_read_back_by_column_with_their_metadata(output_of, part_format):
    output = output_of()
    output.start()
    assert output.part_files() == [] and output.segment_schema() is None and output.read_segments() is None
    first = output.write_part(rows({"a": "ok", "b": "ok"}))
    second = output.write_part(rows({"c": "unreadable"}))
    assert output.part_files() == [first, second]  # in commit order
    assert names([first]) == [f"part-{output.run_id}-00001{part_format.suffix}"] and "/segments/" in first

    again = output_of()  # another run reads what this one committed
    assert again.done_jobs() == {"a", "b", "c"}
    table = again.read_segments(["video_uri", "prob_hap"])
    assert table.column_names == ["video_uri", "prob_hap"]
    assert table.column("video_uri").to_pylist() == ["v/a.mp4"] * 2 + ["v/b.mp4"] * 2 + ["v/c.mp4"] * 2
    assert again.read_segments().column_names == SCHEMA.names
    assert again.segment_schema().names == SCHEMA.names
    assert again.metadata_of_parts() == META
    assert not again.is_complete() and again.success() is None and again.read_videos() is None


def test_a_later_part_supersedes_and_finish_compacts_it_away(output_of, uri):
    output = output_of()
    output.start()
    output.write_part(rows({"a": "unreadable", "b": "ok"}))
    output.write_part(rows({"c": "ok"}))
    transient = lambda status, error: status == "unreadable"  # noqa: E731
    assert output.done_jobs(redo=transient) == {"b", "c"}

    rerun = output_of()  # --retry-failed: job a again, now ok, in a later part
    rerun.start()
    rerun.write_part(rows({"a": "ok"}, prob=0.9))
    assert rerun.done_jobs(redo=transient) == {"a", "b", "c"}
    latest = rerun.read_segments(["job_id", "status", "prob_hap"]).to_pylist()
    assert sorted((r["job_id"], r["status"], r["prob_hap"]) for r in latest) == \
        [("a", "ok", 0.9)] * 2 + [("b", "ok", 0.5)] * 2 + [("c", "ok", 0.5)] * 2

    before = names(rerun.part_files())
    videos = pa.table({"video_uri": ["v/a.mp4", "v/b.mp4", "v/c.mp4"], "status": ["ok"] * 3})
    rerun.finish(videos, {"videos": 3})
    after = names(rerun.part_files())
    assert before[1:] == after[:2] and after[2].startswith(f"part-{rerun.run_id}-")  # the first part rewritten
    assert after[2] not in before
    on_disk = [rerun._read_part(p).select(["job_id", "status"]).to_pylist() for p in rerun.part_files()]
    assert on_disk[2] == [{"job_id": "b", "status": "ok"}] * 2  # the superseded rows are gone
    assert sum(len(t) for t in on_disk) == 6
    assert rerun.is_complete() and rerun.success() == {"videos": 3}
    assert rerun.read_videos().select(["video_uri", "status"]).equals(videos)
    assert {k.decode(): v.decode() for k, v in rerun.read_videos().schema.metadata.items()} == META
    fs, root = url_to_fs(uri)
    assert not fs.exists(f"{root}/_tmp")

    before = names(rerun.part_files())
    again = output_of()
    again.start()
    again.finish(videos, {"videos": 3})  # nothing superseded: no part rewritten
    assert names(again.part_files()) == before and again.is_complete()


def test_start_forgets_an_interrupted_runs_tmp_files_and_the_marker(output_of, uri):
    output = output_of()
    output.start()
    output.write_part(rows({"a": "ok"}))
    output.finish(pa.table({"video_uri": ["v/a.mp4"]}), {"videos": 1})
    fs, root = url_to_fs(uri)
    fs.makedirs(f"{root}/_tmp", exist_ok=True)
    fs.pipe_file(f"{root}/_tmp/segments_part-dead.parquet", b"half written")
    rerun = output_of()
    rerun.start()
    assert not fs.exists(f"{root}/_tmp/segments_part-dead.parquet") and not fs.exists(f"{root}/{SUCCESS}")
    assert not rerun.is_complete() and rerun.done_jobs() == {"a"}  # the committed part stays


def test_a_failing_store_is_retried_then_ends_in_one_error(output_of, monkeypatch):
    output = output_of(write_retries=2)
    output.start()
    mv, calls = output.fs.mv, []

    def flaky(*args, **kwargs):  # the store refuses the first ``fails`` moves
        calls.append(args)
        if len(calls) <= fails:
            raise ConnectionResetError("connection reset by peer")
        return mv(*args, **kwargs)

    monkeypatch.setattr(output.fs, "mv", flaky)
    fails = 2  # within the retries: committed
    first = output.write_part(rows({"a": "ok"}))
    assert output.part_files() == [first] and len(calls) == 3

    calls.clear()
    fails = 10
    with pytest.raises(OutputWriteError) as failed:
        output.write_part(rows({"b": "ok"}))
    message = str(failed.value)
    assert "cannot write segments/part-" in message and "after 3 tries" in message and "\n" not in message
    assert "ConnectionResetError" in message and len(calls) == 3
    assert output.part_files() == [first] and output.done_jobs() == {"a"}  # what was committed is kept

    def broken(*args, **kwargs):
        raise ValueError("not a store error")

    monkeypatch.setattr(output.fs, "mv", broken)  # a bug of ours is not retried
    with pytest.raises(ValueError):
        output.write_part(rows({"c": "ok"}))


def test_parts_written_before_job_ids_are_read_by_video_and_side(output_of, uri, part_format):
    legacy = rows({"a": "ok", "b": "unreadable"}).drop_columns(["job_id"])
    fs, root = url_to_fs(uri)
    fs.makedirs(f"{root}/segments", exist_ok=True)
    with fs.open(f"{root}/segments/part-00000000T000000-old-00001{part_format.suffix}", "wb") as f:
        part_format.write(legacy, f, {b"fv2es.model_id": b"model-a"})
    ids = {name: job_id({"video_uri": f"v/{name}.mp4", "speaker_side": None}) for name in "ab"}

    output = output_of()
    output.start()
    assert output.done_jobs() == set(ids.values())
    assert output.done_jobs(redo=lambda status, error: status != "ok") == {ids["a"]}
    assert output.read_segments(["job_id", "status"]).column("job_id").to_pylist() == [ids["a"]] * 2 + [ids["b"]] * 2
    output.write_part(rows({ids["b"]: "ok"}))  # b re-scored: the legacy part is rewritten, still without job ids
    output.finish(pa.table({"video_uri": ["v/a.mp4", "v/b.mp4"]}), {"videos": 2})
    kept = output.part_files()[-1]
    with fs.open(kept, "rb") as f:
        assert "job_id" not in part_format.read_schema(f).names
    assert sorted(output.read_segments(["job_id", "status"]).to_pylist(), key=lambda r: r["job_id"]) == \
        sorted([{"job_id": ids["a"], "status": "ok"}] * 2 + [{"job_id": ids["b"], "status": "ok"}] * 2,
               key=lambda r: r["job_id"])


def test_one_output_one_model(output_of, uri):
    identity = {"model_id": "model-a", "config_digest": "c1"}
    fs, root = url_to_fs(uri)
    fs.makedirs(root, exist_ok=True)  # (the lease makes it, before the pin)
    output = output_of()
    output.pin(identity)
    assert json.loads(fs.cat_file(f"{root}/{MODEL}")) == identity
    output_of().pin(identity)  # the same model again: fine
    with pytest.raises(OutputMismatch, match="holds scores made with model model-a, this run's is model-b"):
        output_of().pin({**identity, "model_id": "model-b"})
    with pytest.raises(OutputMismatch, match="holds scores made with scoring config c1"):
        output_of().pin({**identity, "config_digest": "c2"})

    fs.rm(f"{root}/{MODEL}")  # an output from before _MODEL.json: judged by its parts' metadata
    output.start()
    output.write_part(rows({"a": "ok"}))
    with pytest.raises(OutputMismatch, match="model model-a"):
        output_of().pin({**identity, "model_id": "model-b"})
    output_of().pin(identity)
    assert json.loads(fs.cat_file(f"{root}/{MODEL}")) == identity


def test_a_lost_lease_stops_every_commit(output_of, uri):
    output = output_of()
    fs, root = url_to_fs(uri)
    with output.lease(ttl_s=0.4) as lease:
        output.start()
        output.write_part(rows({"a": "ok"}))
        fs.pipe_file(f"{root}/{LEASE}", json.dumps({"holder": "other", "host": "elsewhere", "pid": 1,
                                                    "heartbeat": time.time(), "ttl_s": 60}).encode())
        deadline = time.time() + 5
        while lease.lost is None and time.time() < deadline:
            time.sleep(0.05)
        with pytest.raises(LeaseLost):
            output.write_part(rows({"b": "ok"}))
        with pytest.raises(LeaseLost):
            output.finish(pa.table({"video_uri": ["v/a.mp4"]}), {"videos": 1})
    assert output.done_jobs() == {"a"} and not output.is_complete()


def per_job(segments: pa.Table) -> pa.Table:
    """A table made from a part's rows (as a per-part summary would be): rows and mean per job."""
    return segments.group_by("job_id").aggregate([([], "count_all"), ("prob_hap", "mean")]).sort_by("job_id")


def test_a_table_beside_each_part_is_committed_and_compacted_with_it(output_of, uri, part_format):
    output = output_of(beside={"summaries": per_job})
    output.start()
    first = output.write_part(rows({"a": "unreadable", "b": "ok"}))
    second = output.write_part(rows({"c": "ok"}, segments=3))
    assert names(output.part_files("summaries")) == names([first, second])
    assert output._read(output.beside_file(second, "summaries")).to_pylist() == \
        [{"job_id": "c", "count_all": 3, "prob_hap_mean": 0.5}]

    rerun = output_of(beside={"summaries": per_job})
    fs, root = url_to_fs(uri)
    orphan = f"{root}/summaries/part-dead-00001{part_format.suffix}"  # its part never committed
    fs.pipe_file(orphan, b"x")
    rerun.start()
    assert not fs.exists(orphan) and names(rerun.part_files("summaries")) == names([first, second])
    rerun.write_part(rows({"a": "ok"}, prob=0.9))
    rerun.finish(pa.table({"video_uri": ["v/a.mp4", "v/b.mp4", "v/c.mp4"]}), {"videos": 3})
    parts = rerun.part_files()
    assert first not in parts and names(rerun.part_files("summaries")) == names(parts)  # removed with its part
    summaries = pa.concat_tables(rerun._read(rerun.beside_file(p, "summaries")) for p in parts)
    assert sorted(summaries.to_pylist(), key=lambda r: r["job_id"]) == [
        {"job_id": "a", "count_all": 2, "prob_hap_mean": 0.9}, {"job_id": "b", "count_all": 2, "prob_hap_mean": 0.5},
        {"job_id": "c", "count_all": 3, "prob_hap_mean": 0.5}]
    with pytest.raises(ValueError):
        output_of(beside={"segments": per_job})


def test_the_collector_commits_whole_jobs_in_segment_order_and_counts_them(tmp_path):
    """Rows of a job arrive split over batches and out of order, others whole in one batch: each
    committed part holds whole jobs, each job's rows in segment order, ``part_videos`` jobs a part."""
    from fv2es.score.collect import VideoCollector
    from fv2es.score.output import SUMMARIES
    from fv2es.score.summary import summarize_jobs

    def rows(video: int, indices: list[int], count: int, failed: bool = False) -> list[dict]:
        uri = f"v{video}.mp4"
        return [{"video_uri": uri, "job_id": job_id({"video_uri": uri}), "segment_index": i, "segment_count": count,
                 "start": 2.0 * i, "end": 2.0 * i + 2.0, "video_duration_s": 2.0 * count, "model_id": "m",
                 "prob_hap": None if failed else 0.5, "status": "unreadable" if failed else "ok",
                 "error": "unreadable: x" if failed else ""} for i in indices]

    batches = [rows(0, [2, 0], 3) + rows(1, [0], 1) + rows(2, [1, 0], 2, failed=True),
               rows(3, [0, 2, 1], 3) + rows(0, [1], 3),
               rows(4, [0], 1)]
    output = ScoreOutput(str(tmp_path / "o"), beside={SUMMARIES: summarize_jobs})
    output.start()
    columns = list(batches[0][0])
    collector = VideoCollector(output, columns, part_videos=2)
    for batch in batches:
        collector.add(pa.Table.from_pylist(batch))
    collector.flush()
    assert collector.incomplete() == {}
    assert (collector.videos_done, collector.videos_failed, collector.segments, collector.seconds) == (5, 1, 10, 16.0)
    parts = [output._read_part(p) for p in output.part_files()]
    assert [t.num_rows for t in parts] == [3, 6, 1]  # jobs (1, 2), (3, 0), (4)
    for table in parts:
        for uri in set(table.column("video_uri").to_pylist()):
            indices = [r["segment_index"] for r in table.to_pylist() if r["video_uri"] == uri]
            assert indices == sorted(indices) and len(indices) == table.filter(
                pa.compute.equal(table.column("video_uri"), uri)).column("segment_count")[0].as_py()
    assert [t.column("video_uri").to_pylist() for t in parts][:2] == [["v1.mp4", "v2.mp4", "v2.mp4"],
                                                                      ["v3.mp4"] * 3 + ["v0.mp4"] * 3]
