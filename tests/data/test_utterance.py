from dataclasses import fields

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fv2es.data.utterance import Utterance

FULL = Utterance(
    id="Ses01F_impro01_M003",
    video_uri="s3://data/Ses01F_impro01.avi",
    start=23.47,
    end=28.03,
    text="Okay.",
    labels=("fru",),
    speaker_side="right",
    split="train",
    audio_uri="s3://data/Ses01F_impro01.wav",
    audio_channel=1,
    dataset="iemocap",
)
BARE = Utterance(id="v1", video_uri="/videos/v1.mp4")


def test_defaults_mean_whole_video_no_text_unlabelled():
    assert (BARE.start, BARE.end, BARE.text, BARE.labels) == (None, None, "", ())
    assert (BARE.speaker_side, BARE.split, BARE.audio_uri, BARE.audio_channel) == (None, None, None, None)


def test_dict_round_trip():
    row = FULL.to_dict()
    assert row["labels"] == ["fru"] and isinstance(row["labels"], list)
    assert list(row) == [f.name for f in fields(Utterance)]
    assert Utterance.from_dict(row) == FULL
    assert Utterance.from_dict(BARE.to_dict()) == BARE
    assert Utterance(id="x", video_uri="v", labels=["a", "b"]).labels == ("a", "b")


def test_from_dict_reads_what_ray_and_pandas_hand_back():
    row = {
        "id": np.str_("v1"),
        "video_uri": "/videos/v1.mp4",
        "start": np.float64("nan"),
        "end": np.float32(4.5),
        "text": None,
        "labels": np.array(["happy", "sad"], dtype=object),
        "audio_channel": np.int64(1),
        "frames": np.zeros((2, 2)),  # a later stage's column: ignored
    }
    u = Utterance.from_dict(row)
    assert (u.id, u.start, u.end, u.text, u.labels, u.audio_channel) == (
        "v1",
        None,
        4.5,
        "",
        ("happy", "sad"),
        1,
    )
    assert Utterance.from_dict({"id": "a", "video_uri": "v", "labels": "ang"}).labels == ("ang",)
    assert Utterance.from_dict({"id": "a", "video_uri": "v", "labels": None}).labels == ()


def test_arrow_and_parquet_round_trip(tmp_path):
    table = pa.Table.from_pylist([FULL.to_dict(), BARE.to_dict()])
    assert table.column("labels").type == pa.list_(pa.string())
    pq.write_table(table, tmp_path / "u.parquet")
    back = pq.read_table(tmp_path / "u.parquet")
    assert [Utterance.from_dict(r) for r in back.to_pylist()] == [FULL, BARE]
    # pandas turns nulls into NaN and lists into arrays; from_dict undoes both.
    assert [Utterance.from_dict(r) for r in back.to_pandas().to_dict("records")] == [FULL, BARE]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"id": ""}, "id"),
        ({"video_uri": ""}, "video_uri"),
        ({"start": 5.0, "end": 3.0}, r"start \(5.0\) must be < end \(3.0\)"),
        ({"start": 2.0, "end": 2.0}, "must be < end"),
        ({"start": -1.0}, "start must be a finite number >= 0"),
        ({"end": float("inf")}, "end must be a finite number"),
        ({"speaker_side": "middle"}, "speaker_side"),
        ({"split": "val"}, "split"),
        ({"audio_channel": -1}, "audio_channel"),
    ],
)
def test_invalid_rows(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Utterance(**{"id": "u", "video_uri": "v.mp4", **kwargs})


@pytest.fixture(scope="module")
def ray_local(ray_cluster):
    import ray

    return ray


@pytest.mark.slow
def test_rows_survive_ray_data_in_every_batch_format(ray_local):
    rows = [FULL, BARE]
    ds = ray_local.data.from_arrow(pa.Table.from_pylist([u.to_dict() for u in rows]))
    assert [Utterance.from_dict(r) for r in ds.take_all()] == rows
    for batch_format in ("pyarrow", "pandas", "numpy"):
        mapped = ds.map_batches(lambda batch: batch, batch_format=batch_format, batch_size=2)
        assert [Utterance.from_dict(r) for r in mapped.take_all()] == rows, batch_format
    items = ray_local.data.from_items([u.to_dict() for u in rows])
    assert [Utterance.from_dict(r) for r in items.take_all()] == rows
