"""Planning as a stream (fv2es.pipeline.plan.iter_jobs, fv2es.score.planning.TodoPlan): tables
of bounded size, a big manifest grouped through spill files into the same jobs as a small one,
an S3 prefix listed a page at a time, and the done set taken out on the way. No Ray."""

import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from fv2es.config import ScoreConfig
from fv2es.data import manifest
from fv2es.data.manifest import ManifestError
from fv2es.pipeline import plan
from fv2es.pipeline.plan import iter_jobs, iter_videos, job_id
from fv2es.score.planning import TodoPlan


def manifest_rows(videos: int = 40) -> list[dict]:
    """Two or three utterances a video, a video's rows scattered over the manifest, some videos
    two speaker sides (IEMOCAP's dialogs)."""
    rows = []
    for k in range(3):
        for v in range(videos):
            if k == 2 and v % 3:
                continue
            row = {"id": f"v{v}-{k}", "video_uri": f"s3://b/v{v:03d}.mp4", "start": 10.0 - 4 * k, "end": 12.0 - 4 * k,
                   "text": f"utterance {k} of {v}"}
            if v % 5 == 0:
                row["speaker_side"] = "left" if k % 2 else "right"
            rows.append(row)
    return rows


def jobs_of(tables) -> dict[str, dict]:
    return {r["job_id"]: r for t in tables for r in t.to_pylist()}


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_a_big_manifest_is_grouped_through_spill_files_into_the_same_jobs(tmp_path, suffix, monkeypatch):
    rows = manifest_rows()
    path = tmp_path / f"m{suffix}"
    if suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif suffix == ".csv":
        keys = ["id", "video_uri", "start", "end", "text", "speaker_side"]
        path.write_text(",".join(keys) + "\n" + "".join(",".join(str(r.get(k, "")) for k in keys) + "\n" for r in rows))
    else:
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    whole = list(iter_jobs(str(path), ScoreConfig()))  # one table: grouped in memory
    assert len(whole) == 1
    monkeypatch.setattr(plan, "SPILL_FILES", 4)
    spilled = list(iter_jobs(str(path), ScoreConfig(), batch=7))  # 7 rows held, then spilled
    assert all(t.num_rows <= 7 for t in spilled) and len(spilled) > 4
    assert jobs_of(spilled) == jobs_of(whole)
    jobs = jobs_of(whole)
    assert len(jobs) == 40 + 8  # a job per video, two for each two-sided one
    first = jobs[job_id({"video_uri": "s3://b/v001.mp4"})]
    assert json.loads(first["segments"]) == [["v1-1", 6.0, 8.0, "utterance 1 of 1"], ["v1-0", 10.0, 12.0,
                                                                                       "utterance 0 of 1"]]
    assert whole[0].schema == plan.JOB_SCHEMA


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv", ".tsv"])
def test_the_columnar_and_the_row_reader_plan_the_same_job_tables(tmp_path, suffix, monkeypatch):
    """Row for row, table for table: relative paths, segments without times, speaker sides and
    audio files with channels, in memory and through spill files."""
    rows = manifest_rows(12)
    for i, row in enumerate(rows):
        row["video_uri"] = row["video_uri"].replace("s3://b/", "clips/" if i % 2 else "/abs/")
        if i % 4 == 0:
            row.update(audio_uri=f"../wav/{i % 8}.wav", audio_channel=i % 3)
        if i % 7 == 0:
            del row["id"], row["start"], row["end"]
    path = tmp_path / f"m{suffix}"
    keys = ["id", "video_uri", "start", "end", "text", "speaker_side", "audio_uri", "audio_channel"]
    if suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist([{k: r.get(k) for k in keys} for r in rows]), path)
    elif suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        sep = "," if suffix == ".csv" else "\t"
        path.write_text(sep.join(keys) + "\n" + "".join(sep.join(str(r.get(k, "")) for k in keys) + "\n" for r in rows))
    monkeypatch.setattr(plan, "SPILL_FILES", 4)
    for batch in (plan.PLAN_BATCH, 5):
        with monkeypatch.context() as m:  # the columnar path alone: no batch left to the row reader
            m.setattr(manifest, "iter_manifest", None)
            columnar = list(iter_jobs(str(path), ScoreConfig(), batch=batch))
        by_rows = list(iter_jobs(str(path), ScoreConfig(), batch=batch, columnar=False))
        assert len(columnar) == len(by_rows) and all(a.equals(b) for a, b in zip(columnar, by_rows))
    jobs = jobs_of(columnar)
    assert len(jobs) == sum(t.num_rows for t in columnar) > 12
    assert {j["audio_uri"] for j in jobs.values()} >= {"", f"{tmp_path.parent}/wav/0.wav"}
    assert any(j["video_uri"] == f"{tmp_path}/clips/v001.mp4" for j in jobs.values())


def test_a_duplicate_id_is_still_found_with_its_first_row(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in [
        {"id": "a", "video_uri": "x.mp4"}, {"id": "b", "video_uri": "x.mp4"}, {"id": "a", "video_uri": "y.mp4"}]))
    with pytest.raises(ManifestError, match=r"line 3: duplicate id 'a' \(first at line 1\)"):
        list(iter_jobs(str(path), ScoreConfig()))


def test_an_s3_prefix_is_listed_a_page_at_a_time(s3_endpoint):
    from moto.s3.models import s3_backends

    backend = s3_backends["123456789012"]["global"]
    for i in range(2100):
        backend.put_object("data", f"many/{i // 700}/v{i:05d}.mp4", b"")
    backend.put_object("data", "many/.hidden.mp4", b"")
    backend.put_object("data", "many/notes.txt", b"")
    calls = []
    import s3fs

    real = s3fs.S3FileSystem.call_s3

    def counting(self, method, *args, **kwargs):
        calls.append(method)
        return real(self, method, *args, **kwargs)

    s3fs.S3FileSystem.call_s3 = counting
    try:
        pages = list(iter_videos("s3://data/many/", (".mp4",), s3_endpoint, page=1000))
    finally:
        s3fs.S3FileSystem.call_s3 = real
    assert [len(p) for p in pages] == [1000, 1000, 100]
    names = [u for p in pages for u in p]
    assert names == sorted(names) and names[0] == "s3://data/many/0/v00000.mp4"
    assert calls.count("list_objects_v2") == 3  # 2,102 keys, 1,000 a request


def test_the_done_jobs_are_taken_out_on_the_way_and_the_videos_counted(tmp_path):
    tables = [plan.job_table([{"video_uri": f"v{i}.mp4", "segments": "", "audio_uri": "", "audio_channel": -1,
                               "speaker_side": side} for i in range(first, first + 10) for side in ("", "left")])
              for first in (0, 10, 20)]
    done = pa.array([job_id({"video_uri": f"v{i}.mp4"}) for i in range(15)])
    todo = TodoPlan(tables, done)
    left = [t for t in todo]
    assert (todo.jobs, todo.todo, todo.inputs) == (60, 45, 30)
    assert sum(t.num_rows for t in left) == 45 and len(left) == 3
    assert job_id({"video_uri": "v3.mp4"}) not in {r for t in left for r in t.column("job_id").to_pylist()}


def test_job_ids_are_the_digest_they_always_were():
    """Outputs written before keep their rows' identity: the id is sha256 of the JSON list."""
    import hashlib

    for job in ({"video_uri": 's3://b/ü "x".mp4', "speaker_side": "left", "audio_uri": "a.wav", "audio_channel": 1},
                {"video_uri": "v.mp4"}, {"video_uri": "v.mp4", "audio_channel": -1, "speaker_side": None}):
        channel = job.get("audio_channel")
        key = json.dumps([job["video_uri"], job.get("speaker_side") or "", job.get("audio_uri") or "",
                          -1 if channel is None or channel < 0 else channel])
        assert job_id(job) == hashlib.sha256(key.encode()).hexdigest()[:16]


def test_the_done_set_is_matched_as_numbers_and_as_text_alike():
    """Job ids are 16 hex digits, matched as 64-bit numbers; ids of another shape as text."""
    jobs = [job_id({"video_uri": f"v{i}.mp4"}) for i in range(300)]
    tables = [pa.table({"job_id": jobs[at : at + 100], "video_uri": [f"v{i}.mp4" for i in range(at, at + 100)]})
              for at in range(0, 300, 100)]
    done = pa.array(jobs[::3] + ["ffffffffffffffff", "0"])
    by_number = [t for t in TodoPlan(tables, done)]
    left = {j for t in by_number for j in t.column("job_id").to_pylist()}
    assert left == set(jobs) - set(jobs[::3]) and len(left) == 200
    texts = [t.set_column(0, "job_id", pc.binary_join_element_wise(t.column("job_id"), "x", "")) for t in tables]
    plan_text = TodoPlan(texts, pc.binary_join_element_wise(done, "x", ""))
    assert {j[:-1] for t in plan_text for j in t.column("job_id").to_pylist()} == left
    assert (plan_text.jobs, plan_text.todo, plan_text.inputs) == (300, 200, 300)


def test_the_planner_s_job_ids_are_job_id_s_plain_names_or_not():
    """The planner builds plain names' key text with Arrow, others through job_id: the same ids."""
    rows = [("s3://b/v 1.mp4", "", "", -1), ("v[2]~!.mp4", "left", "a/b.wav", 1), ('q"uote.mp4', "", "", -1),
            ("back\\slash.mp4", "right", "", 0), ("ü.mp4", "", "", -1), ("tab\t.mp4", "", "", 3)]
    for table in (rows[:2], rows):
        t = pa.Table.from_arrays([pa.array(c) for c in zip(*table)], names=plan._KEYS)
        t = t.append_column("id", pa.array([str(i) for i in range(len(table))]))
        ids = plan._with_job_ids(t)[0].column("job_id").to_pylist()
        assert ids == [job_id(dict(zip(plan._KEYS, r))) for r in table]
    assert plan._plain_ids(pa.Table.from_arrays([pa.array(c) for c in zip(*rows[:2])], names=plan._KEYS)) is not None
    assert plan._plain_ids(pa.Table.from_arrays([pa.array(c) for c in zip(*rows)], names=plan._KEYS)) is None
