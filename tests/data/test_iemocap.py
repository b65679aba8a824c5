from collections import Counter

import fsspec
import pytest

from fv2es.data.iemocap import IEMOCAP_EMOTIONS, parse_emo_evaluation, read_iemocap, speaker_side
from tests.data.conftest import IEMOCAP_LABEL, IEMOCAP_TEXT, build_iemocap

DIALOG = "Session1/dialog"


def test_fixture_files_are_the_release_bytes():
    # The transcript keeps the release's CRLF line ends; the label file has plain LF.
    text = IEMOCAP_TEXT.read_bytes()
    assert text.count(b"\r\n") == 30 and text.count(b"\n") == 30
    assert b"\r" not in IEMOCAP_LABEL.read_bytes()


def test_emo_evaluation_turns_and_labels():
    turns = parse_emo_evaluation(IEMOCAP_LABEL.read_text())
    assert len(turns) == 30
    assert turns[0] == ("Ses01F_impro01_F000", 6.2901, 8.2357, "neu")
    assert turns[-1] == ("Ses01F_impro01_M013", 101.84, 107.87, "ang")
    assert Counter(t[3] for t in turns) == {"fru": 18, "neu": 5, "xxx": 4, "ang": 3}


def test_reads_the_six_classes_from_the_real_annotations(make_iemocap):
    root = make_iemocap()
    utterances, stats = read_iemocap(str(root))

    assert len(utterances) == 26
    assert Counter(u.labels[0] for u in utterances) == {"fru": 18, "neu": 5, "ang": 3}
    assert all(len(u.labels) == 1 and u.labels[0] in IEMOCAP_EMOTIONS for u in utterances)
    assert (stats.seen, stats.kept, stats.dropped_labels) == (30, 26, {"xxx": 4})
    assert (stats.missing_video, stats.missing_transcript, stats.missing_audio) == (0, 0, 0)
    ids = {u.id for u in utterances}
    assert len(ids) == 26
    assert ids.isdisjoint(
        {"Ses01F_impro01_F003", "Ses01F_impro01_F004", "Ses01F_impro01_F010", "Ses01F_impro01_M012"}
    )

    by_id = {u.id: u for u in utterances}
    video = f"{root}/{DIALOG}/avi/DivX/Ses01F_impro01.avi"
    wav = f"{root}/{DIALOG}/wav/Ses01F_impro01.wav"

    first = by_id["Ses01F_impro01_F000"]
    assert (first.start, first.end, first.text, first.labels) == (6.2901, 8.2357, "Excuse me.", ("neu",))
    assert (first.speaker_side, first.audio_channel) == ("left", 0)
    assert (first.video_uri, first.audio_uri, first.dataset, first.split) == (video, wav, "iemocap", None)

    m003 = by_id["Ses01F_impro01_M003"]
    assert (m003.start, m003.end, m003.labels) == (23.47, 28.03, ("fru",))
    assert m003.text == (
        "Okay. But I didn't tell you to get in this line if you are filling out this particular form."
    )
    assert (m003.speaker_side, m003.audio_channel) == ("right", 1)

    f012 = by_id["Ses01F_impro01_F012"]
    assert (f012.start, f012.end, f012.text, f012.labels) == (
        85.27,
        88.02,
        "That's out of control.",
        ("ang",),
    )
    assert (f012.speaker_side, f012.audio_channel) == ("left", 0)

    m011 = by_id["Ses01F_impro01_M011"]
    assert (m011.labels, m011.speaker_side, m011.audio_channel) == (("ang",), "right", 1)
    assert Counter(u.speaker_side for u in utterances) == {"left": 13, "right": 13}
    # CRLF never leaks into the text.
    assert not any(u.text != u.text.strip() for u in utterances)


def test_emotion_subset_counts_every_other_label(make_iemocap):
    utterances, stats = read_iemocap(str(make_iemocap()), emotions=("ang", "neu"))
    assert Counter(u.labels[0] for u in utterances) == {"neu": 5, "ang": 3}
    assert stats.dropped_labels == {"fru": 18, "xxx": 4}
    assert stats.kept == stats.seen - sum(stats.dropped_labels.values()) == 8


def test_missing_video_drops_and_counts(make_iemocap):
    utterances, stats = read_iemocap(str(make_iemocap(video=False)))
    assert utterances == []
    assert (stats.seen, stats.missing_video, stats.dropped_labels) == (30, 26, {"xxx": 4})


def test_missing_transcript_and_wav_keep_rows_without_them(make_iemocap):
    utterances, stats = read_iemocap(str(make_iemocap(transcript=False, wav=False)))
    assert len(utterances) == 26
    assert all(u.text == "" and u.audio_uri is None and u.audio_channel is None for u in utterances)
    assert all(u.speaker_side in ("left", "right") for u in utterances)
    assert (stats.missing_transcript, stats.missing_audio) == (26, 26)


def test_turns_without_a_time_span_are_dropped_and_counted(make_iemocap):
    root = make_iemocap()
    evaluation = root / DIALOG / "EmoEvaluation" / "Ses01F_impro01.txt"
    content = evaluation.read_text().replace("[6.2901 - 8.2357]", "[8.2357 - 8.2357]")
    evaluation.write_text(content)
    utterances, stats = read_iemocap(str(root))
    assert "Ses01F_impro01_F000" not in {u.id for u in utterances}
    assert (stats.seen, stats.kept, stats.bad_times) == (30, 25, 1)


def test_root_without_sessions_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="Session"):
        read_iemocap(str(tmp_path))
    with pytest.raises(FileNotFoundError):
        read_iemocap(str(tmp_path / "absent"))


def test_reads_from_any_fsspec_storage_and_keeps_uris(tmp_path):
    local = build_iemocap(tmp_path / "release")
    fs = fsspec.filesystem("memory")
    fs.put(str(local), "/iemocap-test", recursive=True)
    try:
        utterances, stats = read_iemocap("memory://iemocap-test")
    finally:
        fs.rm("/iemocap-test", recursive=True)
    assert stats.kept == 26
    assert utterances[0].video_uri == "memory:///iemocap-test/Session1/dialog/avi/DivX/Ses01F_impro01.avi"
    assert utterances[0].audio_uri == "memory:///iemocap-test/Session1/dialog/wav/Ses01F_impro01.wav"


def test_reads_from_s3(tmp_path, s3_endpoint):
    local = build_iemocap(tmp_path / "release")
    s3 = fsspec.filesystem("s3", **s3_endpoint)
    for path in local.rglob("*"):
        if path.is_file():
            s3.pipe_file(f"data/IEMOCAP/{path.relative_to(local).as_posix()}", path.read_bytes())

    utterances, stats = read_iemocap("s3://data/IEMOCAP", storage_options=s3_endpoint)

    assert (stats.seen, stats.kept, stats.dropped_labels) == (30, 26, {"xxx": 4})
    first = utterances[0]
    assert first.video_uri == "s3://data/IEMOCAP/Session1/dialog/avi/DivX/Ses01F_impro01.avi"
    assert (first.text, first.audio_channel) == ("Excuse me.", 0)


@pytest.mark.parametrize(
    "utterance_id, side",
    [
        ("Ses01F_impro01_F000", "left"),
        ("Ses01F_impro01_M003", "right"),
        ("Ses01M_script01_1_M005", "left"),
        ("Ses03M_impro08b_F001", "right"),
        ("Ses05F_script02_2_F040", "left"),
    ],
)
def test_speaker_side(utterance_id, side):
    assert speaker_side(utterance_id) == side


def test_speaker_side_rejects_other_ids():
    with pytest.raises(ValueError, match="not an IEMOCAP utterance id"):
        speaker_side("video_001")
