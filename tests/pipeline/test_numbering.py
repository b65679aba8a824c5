"""Segment numbering (fv2es.pipeline.numbering): the jobs whole in a batch numbered together."""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.compute as pc

from fv2es.pipeline.numbering import SegmentNumbering, number, number_many

SCHEMA = pa.schema([("video_uri", pa.string()), ("job_id", pa.string()), ("chunk_index", pa.int32()),
                    ("chunk_count", pa.int32()), ("chunk_row", pa.int32()), ("chunk_rows", pa.int32()),
                    ("start", pa.float64()), ("status", pa.string()), ("voice_spans", pa.binary()),
                    ("voice_embeddings", pa.binary())])


def table_of(rows: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=SCHEMA)


def job_rows(job: int, chunks: int, rows: int, voiced: bool = False) -> list[dict]:
    return [{"video_uri": f"v{job}", "job_id": f"{job:016x}", "chunk_index": c, "chunk_count": chunks,
             "chunk_row": r, "chunk_rows": rows, "start": c * 10.0 + r, "status": "unreadable",
             "voice_spans": b"\0" * 8 if voiced else None, "voice_embeddings": None}
            for c in range(chunks) for r in range(rows)]


def test_the_jobs_whole_in_a_batch_come_back_as_one_table_numbered_as_each_alone():
    rows = [r for j in range(40) for r in job_rows(j, 1 + j % 3, 1 + j % 4)]
    random.Random(0).shuffle(rows)  # rows arrive in any order
    batch = table_of(rows)
    (table,) = SegmentNumbering().add(batch)
    assert table.num_rows == len(rows) == sum((1 + j % 3) * (1 + j % 4) for j in range(40))
    assert table.column_names == ["video_uri", "job_id", "start", "status", "speaker", "speaker_turns",
                                  "segment_index", "segment_count"]
    for j in range(40):
        mine = table.filter(pc.equal(table.column("job_id"), f"{j:016x}"))
        alone = number(batch.filter(pc.equal(batch.column("job_id"), f"{j:016x}")))
        assert mine.to_pylist() == alone.to_pylist()
        n = (1 + j % 3) * (1 + j % 4)
        assert mine.column("segment_index").to_pylist() == list(range(n))
        assert set(mine.column("segment_count").to_pylist()) == {n}
        assert mine.column("start").to_pylist() == sorted(mine.column("start").to_pylist())
    assert table.column("speaker").null_count == table.num_rows


def test_a_job_split_over_batches_or_with_speech_is_numbered_alone_once_whole(monkeypatch):
    import fv2es.pipeline.numbering as numbering_module

    labelled = []

    def label(job, threshold=None):  # the speaker labelling, for a job with speech pieces only
        labelled.append(job.column("job_id")[0].as_py())
        n = job.num_rows
        return job.drop_columns(["voice_spans", "voice_embeddings"]).append_column(
            "speaker", pa.array(["S0"] * n)).append_column("speaker_turns", pa.nulls(n, pa.string()))

    monkeypatch.setattr(numbering_module, "label_speakers", label)
    split, voiced = job_rows(1, 2, 2), job_rows(2, 1, 3, voiced=True)
    plain = [r for j in (3, 4, 5) for r in job_rows(j, 1, 1)]
    numbering = SegmentNumbering()
    first = numbering.add(table_of(split[:3] + plain + voiced))
    assert sorted(t.num_rows for t in first) == [3, 3]  # the three one-row jobs together; the voiced job alone
    together = next(t for t in first if t.column("speaker").null_count == 3)
    assert sorted(together.column("job_id").to_pylist()) == [f"{j:016x}" for j in (3, 4, 5)]
    assert set(together.column("segment_count").to_pylist()) == {1}
    assert labelled == [f"{2:016x}"] and numbering.incomplete() == [f"{1:016x}"]
    # the rest of job 1 comes with a new job 6: job 6 whole here but job 1 had rows pending
    second = numbering.add(table_of(split[3:] + job_rows(6, 1, 2)))
    by_job = {t.column("job_id")[0].as_py(): t for t in second}
    assert by_job[f"{1:016x}"].column("segment_index").to_pylist() == [0, 1, 2, 3]
    assert by_job[f"{1:016x}"].column("start").to_pylist() == [0.0, 1.0, 10.0, 11.0]
    assert by_job[f"{6:016x}"].column("segment_count").to_pylist() == [2, 2]
    assert numbering.incomplete() == [] and sum(t.num_rows for t in first + second) == 4 + 3 + 3 + 2


def test_number_many_numbers_each_job_from_zero():
    table = number_many(table_of(job_rows(7, 1, 3)[::-1] + job_rows(8, 2, 1)))
    assert table.column("segment_index").to_pylist() == [0, 1, 2, 0, 1]
    assert table.column("segment_count").to_pylist() == [3, 3, 3, 2, 2]
