import json

import fsspec
import pytest

from fv2es.data.mosei import (
    CSD_COLUMNS,
    MOSEI_EMOTIONS,
    LabelRecord,
    MoseiLayout,
    read_mosei,
    read_mosei_labels,
)

TRANSCRIPTS = {
    "--qXJuDtHPw": (
        "--qXJuDtHPw___0___0.0___4.0___first_segment, with underscores\n"
        "--qXJuDtHPw___1___3.5___9.25___second one\n"
        "--qXJuDtHPw___2___10.0___12.0___never labelled\n"
    ),
    # An id that ends in '_', and a slightly negative start as the release has.
    "abc_": "abc____0___-0.457596371882___1.77959183673___negative start\r\nabc____1___2.0___5.0___calm\r\n",
    "zz_novideo": "zz_novideo___0___1.0___2.0___no video file\n",
}

# Intensities by time; columns in another order than ours, plus a sentiment column to ignore.
TIME_LABELS = """video_id,start,end,sentiment,happy,sad,anger,surprise,disgust,fear
--qXJuDtHPw,0.02,3.98,1.0,0.33,0,1.0,0,0,0
--qXJuDtHPw,3.5,9.25,-1.0,0,0.66,0,0,0,0.33
abc_,-0.457596371882,1.77959183673,0,0,0,0,1,0,0
abc_,2.0,5.0,0,0,0,0,0,0,0
zz_novideo,1.0,2.0,0,0,0,0,0,1,0
ghost,1.0,2.0,0,0,0,1,0,0,0
--qXJuDtHPw,20.0,25.0,0,1,0,0,0,0,0
"""

EXPECTED_LABELS = {
    "--qXJuDtHPw_0": ("anger", "happy"),
    "--qXJuDtHPw_1": ("fear", "sad"),
    "abc__0": ("surprise",),
    "abc__1": (),
}


@pytest.fixture
def mosei_root(tmp_path):
    root = tmp_path / "CMU_MOSEI"
    transcripts = root / "Transcript" / "Segmented" / "Combined"
    videos = root / "Videos" / "Full" / "Combined"
    transcripts.mkdir(parents=True)
    videos.mkdir(parents=True)
    for video_id, content in TRANSCRIPTS.items():
        (transcripts / f"{video_id}.txt").write_bytes(content.encode())
        if video_id != "zz_novideo":
            (videos / f"{video_id}.mp4").write_bytes(b"")
    (root / "labels.csv").write_text(TIME_LABELS)
    return root


def test_reads_segments_with_labels_matched_by_time(mosei_root):
    utterances, stats = read_mosei(str(mosei_root), str(mosei_root / "labels.csv"))

    assert {u.id: u.labels for u in utterances} == EXPECTED_LABELS
    by_id = {u.id: u for u in utterances}
    first = by_id["--qXJuDtHPw_0"]
    assert (first.start, first.end, first.text) == (0.0, 4.0, "first_segment, with underscores")
    assert first.video_uri == f"{mosei_root}/Videos/Full/Combined/--qXJuDtHPw.mp4"
    assert (first.dataset, first.audio_uri, first.speaker_side, first.split) == ("mosei", None, None, None)
    assert (by_id["abc__0"].start, by_id["abc__0"].end) == (0.0, 1.77959183673)  # start clamped to 0
    assert by_id["abc__1"].text == "calm"

    assert (stats.seen, stats.kept, stats.missing_labels, stats.missing_video) == (6, 4, 1, 1)
    assert (stats.no_emotion, stats.dropped_no_emotion, stats.unmatched_labels) == (1, 0, 2)
    assert stats.kept == stats.seen - stats.missing_video - stats.missing_labels - stats.dropped_no_emotion


def test_time_tolerance_and_dropping_no_emotion(mosei_root):
    labels = str(mosei_root / "labels.csv")
    _, stats = read_mosei(str(mosei_root), labels, MoseiLayout(tolerance=0.01))
    assert (stats.missing_labels, stats.kept) == (2, 3)  # 0.02 s off is now too far

    utterances, stats = read_mosei(str(mosei_root), labels, MoseiLayout(keep_no_emotion=False))
    assert "abc__1" not in {u.id for u in utterances}
    assert (stats.kept, stats.dropped_no_emotion, stats.no_emotion) == (3, 1, 0)


def test_unlabelled_read_for_scoring(mosei_root):
    utterances, stats = read_mosei(str(mosei_root))
    assert [u.id for u in utterances] == [
        "--qXJuDtHPw_0",
        "--qXJuDtHPw_1",
        "--qXJuDtHPw_2",
        "abc__0",
        "abc__1",
    ]
    assert all(u.labels == () for u in utterances)
    assert (stats.seen, stats.kept, stats.missing_video, stats.no_emotion, stats.unmatched_labels) == (
        6,
        5,
        1,
        0,
        0,
    )


MTURK_A = """HITId,Input.VIDEO_ID,Input.CLIP,Answer.anger,Answer.disgust,Answer.fear,Answer.happiness,Answer.sadness,Answer.surprise,Answer.sentiment
h1,https://www.youtube.com/watch/--qXJuDtHPw,0,0,0,0,1,0,0,2
h2,https://www.youtube.com/watch/--qXJuDtHPw,1,0,0,1,0,0.5,0,1
"""
MTURK_B = """HITId,Input.VIDEO_ID,Input.CLIP,Answer.anger,Answer.disgust,Answer.fear,Answer.happiness,Answer.sadness,Answer.surprise,Answer.sentiment
h3,--qXJuDtHPw,0,2,0,0,0,0,0,-1
h4,abc_,0,,,,,,3,0
h5,abc_,1,,,,,,,
"""


def test_mechanical_turk_sheets_by_segment_summed_over_annotators(mosei_root):
    labels = mosei_root / "Labels"
    labels.mkdir()
    (labels / "batch_a.csv").write_text(MTURK_A)
    (labels / "batch_b.csv").write_text(MTURK_B)
    (labels / "README.txt").write_text("not a label file")

    records = read_mosei_labels(str(labels))
    assert LabelRecord("--qXJuDtHPw", "0", None, None, (2.0, 0.0, 0.0, 1.0, 0.0, 0.0)) in records
    assert len(records) == 4

    utterances, stats = read_mosei(str(mosei_root), str(labels))
    assert {u.id: u.labels for u in utterances} == EXPECTED_LABELS
    assert (stats.missing_labels, stats.unmatched_labels, stats.no_emotion) == (2, 0, 1)


def write_csd(path, rows_by_video, dimension_names=None):
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        sequence = f.create_group("All Labels")
        data = sequence.create_group("data")
        for video_id, rows in rows_by_video.items():
            group = data.create_group(video_id)
            group.create_dataset("intervals", data=[r[:2] for r in rows])
            group.create_dataset("features", data=[r[2:] for r in rows])
        metadata = sequence.create_group("metadata")
        if dimension_names is not None:
            metadata.create_dataset("dimension names", (1,), dtype=h5py.special_dtype(vlen=str))
            metadata["dimension names"][0] = json.dumps(dimension_names)


#                  start, end, sentiment, happy, sad, anger, surprise, disgust, fear (the SDK's order)
CSD_ROWS = {
    "--qXJuDtHPw": [
        (0.0, 4.0, 1.0, 0.333, 0.0, 1.0, 0.0, 0.0, 0.0),
        (3.5000001, 9.25, -1.0, 0.0, 0.666, 0.0, 0.0, 0.0, 0.333),
    ],
    "abc_": [
        (-0.457596371882, 1.77959183673, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0),
        (2.0, 5.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    ],
}


def test_sdk_csd_labels(mosei_root):
    csd = mosei_root / "CMU_MOSEI_Labels.csd"
    write_csd(csd, CSD_ROWS)
    records = read_mosei_labels(str(csd))
    assert LabelRecord("--qXJuDtHPw", None, 0.0, 4.0, (1.0, 0.0, 0.0, 0.333, 0.0, 0.0)) in records
    utterances, stats = read_mosei(str(mosei_root), str(csd))
    assert {u.id: u.labels for u in utterances} == EXPECTED_LABELS
    # zz_novideo has no label record here, so it counts as unlabelled before its missing video.
    assert (stats.missing_labels, stats.missing_video, stats.unmatched_labels) == (2, 0, 0)


def test_csd_column_names_from_its_metadata(mosei_root):
    # A sequence that declares another column order is read by its declared names.
    names = ["fear", "disgust", "surprise", "Anger", "Sadness", "Happiness", "sentiment"]
    reordered = {vid: [r[:2] + tuple(reversed(r[2:])) for r in rows] for vid, rows in CSD_ROWS.items()}
    write_csd(mosei_root / "reordered.csd", reordered, dimension_names=names)
    write_csd(mosei_root / "plain.csd", CSD_ROWS, dimension_names=list(CSD_COLUMNS))
    assert read_mosei_labels(str(mosei_root / "reordered.csd")) == read_mosei_labels(
        str(mosei_root / "plain.csd")
    )


def test_layout_patterns_and_fsspec_storage(tmp_path, mosei_root):
    fs = fsspec.filesystem("memory")
    fs.pipe("/mosei-test/text/--qXJuDtHPw.txt", TRANSCRIPTS["--qXJuDtHPw"].encode())
    fs.pipe("/mosei-test/video/--qXJuDtHPw/full.mp4", b"")
    fs.pipe("/mosei-test/labels.csv", TIME_LABELS.encode())
    layout = MoseiLayout(
        video_pattern="video/{video_id}/full.mp4",
        transcript_dir="text",
        audio_pattern="/wav16k/{video_id}.wav",
    )
    try:
        utterances, stats = read_mosei("memory://mosei-test", "memory://mosei-test/labels.csv", layout)
    finally:
        fs.rm("/mosei-test", recursive=True)
    assert [u.id for u in utterances] == ["--qXJuDtHPw_0", "--qXJuDtHPw_1"]
    assert utterances[0].video_uri == "memory:///mosei-test/video/--qXJuDtHPw/full.mp4"
    assert utterances[0].audio_uri == "memory:///wav16k/--qXJuDtHPw.wav"
    # Only one video has a transcript here: the label rows of the other four match nothing.
    assert (stats.seen, stats.missing_labels, stats.unmatched_labels) == (3, 1, 5)


@pytest.mark.parametrize(
    "content, message",
    [
        (
            "video_id,start,end,anger,disgust,fear,happy,sad\nv,0,1,0,0,0,0,0\n",
            r"missing label column\(s\) \['surprise'\]",
        ),
        (
            "video_id,anger,disgust,fear,happy,sad,surprise\nv,0,0,0,0,0,0\n",
            "needs a 'segment' column or 'start' and 'end'",
        ),
        (
            "video_id,start,end,anger,disgust,fear,happy,sad,surprise\nv,0,,0,0,0,0,0,0\n",
            "row 1: needs a segment or both",
        ),
        (
            "video_id,segment,anger,disgust,fear,happy,sad,surprise\nv,0,0,lots,0,0,0,0\n",
            "row 1: column 'disgust': not a number: 'lots'",
        ),
        ("video_id,segment,anger,disgust,fear,happy,sad,surprise\n,0,0,0,0,0,0,0\n", "row 1: empty video_id"),
    ],
)
def test_bad_label_csv(tmp_path, content, message):
    (tmp_path / "labels.csv").write_text(content)
    with pytest.raises(ValueError, match=message):
        read_mosei_labels(str(tmp_path / "labels.csv"))


def test_missing_transcript_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="transcript folder"):
        read_mosei(str(tmp_path))


def test_emotion_order_is_the_seeds():
    assert MOSEI_EMOTIONS == ("anger", "disgust", "fear", "happy", "sad", "surprise")


def test_segments_without_a_time_span_are_dropped_and_counted(tmp_path):
    (tmp_path / "text").mkdir()
    (tmp_path / "video").mkdir()
    (tmp_path / "video" / "v.mp4").write_bytes(b"")
    (tmp_path / "text" / "v.txt").write_text(
        "v___0___5.0___5.0___zero length\nv___1___-2.0___-1.0___before the video\nv___2___1___2___fine\n"
    )
    # A spreadsheet round trip wrote the segment ids as floats.
    (tmp_path / "labels.csv").write_text(
        "video_id,segment,anger,disgust,fear,happy,sad,surprise\n"
        "v,0.0,1,0,0,0,0,0\nv,1.0,1,0,0,0,0,0\nv,2.0,0,0,0,0,1,0\n"
    )
    layout = MoseiLayout(video_pattern="video/{video_id}.mp4", transcript_dir="text")
    utterances, stats = read_mosei(str(tmp_path), str(tmp_path / "labels.csv"), layout)
    assert [(u.id, u.start, u.end, u.labels) for u in utterances] == [("v_2", 1.0, 2.0, ("sad",))]
    assert (stats.seen, stats.kept, stats.bad_times, stats.unmatched_labels) == (3, 1, 2, 0)
