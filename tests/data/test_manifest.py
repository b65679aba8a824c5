import gzip
import json
import re

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fv2es.data import manifest, manifest_arrow
from fv2es.data.iemocap import IEMOCAP_EMOTIONS
from fv2es.data.manifest import ManifestError, iter_manifest, read_manifest
from fv2es.data.manifest_arrow import iter_manifest_tables
from fv2es.data.utterance import Utterance

CSV = (
    "\ufeffvideo_uri,id,start,end,text,labels,split,speaker_side,audio_uri,audio_channel,extra\r\n"
    "videos/a.mp4,a1,1.5,4,hello there,ang;neu,train,left,audio/a.wav,1,x\r\n"
    "/abs/b.mp4,,,,,,,,,,\r\n"
    's3://bucket/c.mp4,,2,3.25,"quoted, with comma",hap | sad ,test,,,,\r\n'
    "../up/d.mp4,,,7,,neu,,,,,\r\n"
)


def expected(base):
    return [
        Utterance(
            id="a1",
            video_uri=f"{base}/videos/a.mp4",
            start=1.5,
            end=4.0,
            text="hello there",
            labels=("ang", "neu"),
            split="train",
            speaker_side="left",
            audio_uri=f"{base}/audio/a.wav",
            audio_channel=1,
        ),
        Utterance(id="/abs/b.mp4", video_uri="/abs/b.mp4"),
        Utterance(
            id="s3://bucket/c.mp4#t=2,3.25",
            video_uri="s3://bucket/c.mp4",
            start=2.0,
            end=3.25,
            text="quoted, with comma",
            labels=("hap", "sad"),
            split="test",
        ),
        Utterance(
            id=f"{base.rsplit('/', 1)[0]}/up/d.mp4#t=,7",
            video_uri=f"{base.rsplit('/', 1)[0]}/up/d.mp4",
            end=7.0,
            labels=("neu",),
        ),
    ]


def test_csv(tmp_path):
    (tmp_path / "m").mkdir()
    path = tmp_path / "m" / "manifest.csv"
    path.write_text(CSV)
    assert read_manifest(str(path), emotions=IEMOCAP_EMOTIONS) == expected(str(tmp_path / "m"))


def test_compressed_csv_and_tsv(tmp_path):
    (tmp_path / "m.csv.gz").write_bytes(gzip.compress(CSV.encode()))
    assert read_manifest(str(tmp_path / "m.csv.gz")) == expected(str(tmp_path))
    (tmp_path / "m.tsv").write_text("video_uri\tlabel\tstart\tend\nx.mp4\tneu\t0\t1\n")
    [u] = read_manifest(str(tmp_path / "m.tsv"), dataset="mine")
    assert (u.video_uri, u.labels, u.start, u.end, u.dataset) == (
        str(tmp_path / "x.mp4"),
        ("neu",),
        0.0,
        1.0,
        "mine",
    )


def test_jsonl(tmp_path):
    rows = [
        {"video_uri": "videos/a.mp4", "id": "a1", "start": 1.5, "end": 4, "text": "hello there",
         "labels": ["ang", "neu"], "split": "train", "speaker_side": "left", "audio_uri": "audio/a.wav",
         "audio_channel": 1},
        {"video_uri": "/abs/b.mp4", "start": None, "labels": []},
        {"video_uri": "s3://bucket/c.mp4", "start": 2, "end": 3.25, "text": "quoted, with comma",
         "label": "hap|sad", "split": "test"},
        {"video_uri": "../up/d.mp4", "end": 7, "label": "neu"},
    ]  # fmt: skip
    (tmp_path / "m").mkdir()
    path = tmp_path / "m" / "manifest.jsonl"
    path.write_text(
        "\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + "\n".join(json.dumps(r) for r in rows[2:])
    )
    assert read_manifest(str(path), emotions=IEMOCAP_EMOTIONS) == expected(str(tmp_path / "m"))


def test_parquet_with_list_labels(tmp_path):
    table = pa.table(
        {
            "video_uri": ["videos/a.mp4", "/abs/b.mp4"],
            "start": [1.5, None],
            "end": [4.0, None],
            "labels": pa.array([["ang", "neu"], None], type=pa.list_(pa.string())),
            "audio_channel": pa.array([1, None], type=pa.int64()),
        }
    )
    pq.write_table(table, tmp_path / "manifest.parquet")
    a, b = read_manifest(str(tmp_path / "manifest.parquet"))
    assert (a.id, a.video_uri, a.start, a.end, a.labels, a.audio_channel) == (
        f"{tmp_path}/videos/a.mp4#t=1.5,4", f"{tmp_path}/videos/a.mp4", 1.5, 4.0, ("ang", "neu"), 1,
    )  # fmt: skip
    assert b == Utterance(id="/abs/b.mp4", video_uri="/abs/b.mp4")


def test_relative_paths_resolve_against_a_remote_manifest():
    fs = fsspec.filesystem("memory")
    fs.pipe("/manifests/set1/m.csv", b"video_uri,audio_uri\nclips/a.mp4,../wav/a.wav\n")
    try:
        [u] = read_manifest("memory://manifests/set1/m.csv")
    finally:
        fs.rm("/manifests", recursive=True)
    assert (u.video_uri, u.audio_uri) == (
        "memory://manifests/set1/clips/a.mp4",
        "memory://manifests/wav/a.wav",
    )


BAD_CSV = [
        ("path,label\na.mp4,neu\n", r"m\.csv: no 'video_uri' column \(columns: \['path', 'label'\]\)"),
        (
            "video_uri,label\na.mp4,neu\n,ang\n",
            r"m\.csv: row 2 \(line 3\): column 'video_uri' is missing or empty",
        ),
        (
            "video_uri,start,end\na.mp4,5,3\n",
            r"row 1 \(line 2\): columns 'start'/'end': start \(5.0\) must be < end \(3.0\)",
        ),
        (
            "video_uri,start\na.mp4,soon\n",
            r"row 1 \(line 2\): column 'start': not a number of seconds: 'soon'",
        ),
        ("video_uri,end\na.mp4,-2\n", r"column 'end': must be a finite number >= 0"),
        (
            "video_uri,label\na.mp4,neu;happy\n",
            r"row 1 \(line 2\): column 'label': unknown label\(s\) \['happy'\]",
        ),
        ("video_uri,split\na.mp4,val\n", r"column 'split': 'val' is not one of \['train', 'valid', 'test'\]"),
        ("video_uri,speaker_side\na.mp4,up\n", r"column 'speaker_side'"),
        ("video_uri,audio_channel\na.mp4,1.5\n", r"column 'audio_channel': expected an integer >= 0"),
        (
            "video_uri,id\na.mp4,x\nb.mp4,x\n",
            r"row 2 \(line 3\): duplicate id 'x' \(first at row 1 \(line 2\)\)",
        ),
    ]


@pytest.mark.parametrize("content, message", BAD_CSV)
def test_bad_csv_rows_name_the_row_and_column(tmp_path, content, message):
    (tmp_path / "m.csv").write_text(content)
    with pytest.raises(ManifestError, match=message):
        read_manifest(str(tmp_path / "m.csv"), emotions=IEMOCAP_EMOTIONS)


def test_bad_jsonl_and_formats(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"video_uri": "a.mp4"}\n\n{"video_uri": \n')
    with pytest.raises(ManifestError, match=r"m\.jsonl: line 3: not valid JSON"):
        read_manifest(str(tmp_path / "m.jsonl"))
    (tmp_path / "m.jsonl").write_text('["a.mp4"]\n')
    with pytest.raises(ManifestError, match="line 1: expected a JSON object"):
        read_manifest(str(tmp_path / "m.jsonl"))
    (tmp_path / "m.jsonl").write_text('{"video_uri": "a.mp4", "labels": ["ang", "joy"]}\n')
    with pytest.raises(ManifestError, match=r"line 1: column 'labels': unknown label\(s\) \['joy'\]"):
        read_manifest(str(tmp_path / "m.jsonl"), emotions=IEMOCAP_EMOTIONS)
    with pytest.raises(ManifestError, match=r"unknown manifest format '\.xlsx'"):
        read_manifest(str(tmp_path / "m.xlsx"))
    pq.write_table(pa.table({"path": ["a.mp4"]}), tmp_path / "m.parquet")
    with pytest.raises(ManifestError, match="no 'video_uri' column"):
        read_manifest(str(tmp_path / "m.parquet"))


# -- the columnar reader (fv2es.data.manifest_arrow) against the row reader ------------------------

def columnar_and_rows(uri: str, monkeypatch) -> tuple[pa.Table, pa.Table]:
    """The planning rows of ``uri`` read both ways; the columnar read must not use the row reader."""
    with monkeypatch.context() as m:
        def no_rows(*args, **kwargs):
            raise AssertionError("the columnar reader fell back to the row reader")

        m.setattr(manifest, "iter_manifest", no_rows)
        columnar = pa.concat_tables(list(iter_manifest_tables(uri)))
    rows = pa.concat_tables(list(iter_manifest_tables(uri, columnar=False)))
    return columnar, rows


def test_whitespace_is_what_str_strip_strips():
    import sys

    assert "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace()) == manifest_arrow._WHITESPACE


def test_the_columnar_reader_gives_the_rows_of_the_row_reader(tmp_path, monkeypatch):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "manifest.csv").write_text(CSV)
    (tmp_path / "m.csv.gz").write_bytes(gzip.compress(CSV.encode()))
    (tmp_path / "m.tsv").write_text("video_uri\tspeaker_side\tstart\tend\tid\n x.mp4 \tright\t0\t1.25\t\n"
                                    "y/z.mp4\t\t\t\t\n")
    rows = [{"video_uri": "videos/a.mp4", "id": 7, "start": 1.5, "end": 4, "text": " hi ", "speaker_side": "left",
             "audio_uri": "../wav/a.wav", "audio_channel": 1, "labels": ["ang"]},
            {"video_uri": "s3://b/c.mp4", "start": 2, "end": 3.125, "split": "test"}, {"video_uri": "/abs/b.mp4"}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n\n" for r in rows))
    pq.write_table(pa.table({"video_uri": ["videos/a.mp4", "b.mp4", "/c.mp4"], "start": [1.5, None, float("nan")],
                             "end": pa.array([4, 9, None], pa.int64()), "audio_channel": [1.0, None, 0.0],
                             "labels": pa.array([["ang"], None, []], pa.list_(pa.string()))}),
                   tmp_path / "m.parquet")
    for name in ("m/manifest.csv", "m.csv.gz", "m.tsv", "m.jsonl", "m.parquet"):
        columnar, rows = columnar_and_rows(str(tmp_path / name), monkeypatch)
        assert columnar.equals(rows), name
        assert columnar.num_rows == {"m.tsv": 2, "m.jsonl": 3, "m.parquet": 3}.get(name, 4)
    columnar, _ = columnar_and_rows(str(tmp_path / "m/manifest.csv"), monkeypatch)
    assert columnar.to_pylist()[0] == {  # the values themselves, as the row reader's test has them
        "video_uri": f"{tmp_path}/m/videos/a.mp4", "speaker_side": "left", "audio_uri": f"{tmp_path}/m/audio/a.wav",
        "audio_channel": 1, "id": "a1", "start": 1.5, "end": 4.0, "text": "hello there"}
    assert columnar.column("id").to_pylist()[2:] == ["s3://bucket/c.mp4#t=2,3.25", f"{tmp_path}/up/d.mp4#t=,7"]


@pytest.mark.parametrize("content", [
    "video_uri,start\na.mp4,1_000\n",  # float() reads it; the columnar checks leave it to the row reader
    "video_uri,end\na.mp4,\u0663\n",  # an Arabic-Indic digit
    "video_uri,audio_channel\na.mp4,2.0\n",
    "video_uri\n./a.mp4\nb//c.mp4\nd/../e.mp4\nf/\n",
    "video_uri,id,start,end\na.mp4,,-0,0.0001\nb.mp4,,,\nc.mp4,,1e21,1e22\n",
    "video_uri,text,extra\na.mp4,hi\nb.mp4,x,y,z\n",  # short and long rows: csv.DictReader takes both
    "video_uri,,\na.mp4,,\n",  # unnamed columns
])
def test_values_the_columnar_checks_do_not_take_are_read_by_the_row_reader(tmp_path, content):
    (tmp_path / "m.csv").write_text(content)
    columnar = pa.concat_tables(list(iter_manifest_tables(str(tmp_path / "m.csv"))))
    assert columnar.equals(pa.concat_tables(list(iter_manifest_tables(str(tmp_path / "m.csv"), columnar=False))))
    assert columnar.num_rows == len(read_manifest(str(tmp_path / "m.csv")))


@pytest.mark.parametrize("content, message", BAD_CSV + [
    ("video_uri,start\na.mp4,inf\n", r"column 'start': must be a finite number >= 0"),
    ("video_uri,audio_channel\na.mp4,nan\n", r"row 1 \(line 2\)"),
    ("video_uri,text\na.mp4,ok\n   ,x\n", r"row 2 \(line 3\): column 'video_uri' is missing or empty"),
])
def test_the_columnar_reader_raises_the_row_readers_errors(tmp_path, content, message, monkeypatch):
    """The same message, word for word, from the first batch or after 40 good rows (many batches)."""
    monkeypatch.setattr(manifest_arrow, "BLOCK_BYTES", 64)
    good = "".join(f"ok/v{i}.mp4\n" for i in range(40))
    for text in (content, content.replace("\n", "\n" + good, 1) if "video_uri" in content.split("\n")[0] else content):
        path = tmp_path / "m.csv"
        path.write_text(text)
        try:
            list(iter_manifest(str(path)))
        except ManifestError as e:
            expected = str(e)
        else:  # an unknown label: planning reads no labels, so neither reader refuses it
            expected = None
        if expected is None:
            assert pa.concat_tables(list(iter_manifest_tables(str(path)))).num_rows == len(read_manifest(str(path)))
            continue
        if text is content:
            assert re.search(message, expected)
        with pytest.raises(ManifestError) as raised:
            list(iter_manifest_tables(str(path)))
        assert str(raised.value) == expected


def test_a_duplicate_id_across_batches_names_both_rows(tmp_path, monkeypatch):
    monkeypatch.setattr(manifest_arrow, "BLOCK_BYTES", 64)
    path = tmp_path / "m.csv"
    path.write_text("video_uri,id\n" + "".join(f"v{i}.mp4,u{i}\n" for i in range(30)) + "w.mp4,u3\n")
    with pytest.raises(ManifestError, match=r"^.*m\.csv: row 31 \(line 32\): duplicate id 'u3' "
                                            r"\(first at row 4 \(line 5\)\)$"):
        list(iter_manifest_tables(str(path)))
    pq.write_table(pa.table({"video_uri": ["a.mp4", "a.mp4"]}), tmp_path / "d.parquet")
    with pytest.raises(ManifestError, match=r"row 2: duplicate id '.*/a\.mp4' \(first at row 1\)"):
        list(iter_manifest_tables(str(tmp_path / "d.parquet")))
