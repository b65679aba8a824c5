"""The face stage with several people: the speaker's face track, on generated conversations
(talking_faces: real face photographs side by side, mouths moving with their own espeak-ng voice)."""

from __future__ import annotations

import json
import re

import numpy as np
import pyarrow as pa
import pytest

from fv2es.config import ResourcesConfig, SegmentsConfig
from fv2es.data.utterance import Utterance
from fv2es.media.decode import DecodeConfig
from fv2es.media.diarize import SpeakersConfig
from fv2es.media.faces import FaceConfig, FaceCropper
from fv2es.pipeline.numbering import label_speakers, number_all
from fv2es.pipeline.packing import unpack_faces
from fv2es.pipeline.plan import jobs_from_utterances
from fv2es.pipeline.stages import Decode, Faces, Speakers
from fv2es.timeline import segment_table, timeline
from tests.pipeline.talking_faces import conversation


def decode_rows(clip, segments=None, window_s: float | None = None) -> pa.Table:
    """The clip decoded as the pipeline does (500 ms frames): the given (start, end) segments, or windows."""
    if segments is None:
        utterances = [Utterance("whole", str(clip.path))]
        plan = SegmentsConfig(mode="window", window_s=window_s)
    else:
        utterances = [Utterance(f"u{k}", str(clip.path), s, e) for k, (s, e) in enumerate(segments)]
        plan = SegmentsConfig()
    stage = Decode(DecodeConfig(), plan, ResourcesConfig())
    return number_all(pa.concat_tables(list(stage(pa.Table.from_pylist(jobs_from_utterances(utterances))))))


def speaking(clip, start: float, end: float) -> int | None:
    """The face that speaks for at least 80% of [start, end), else None."""
    for s, e, face in clip.turns:
        if min(e, end) - max(s, start) >= 0.8 * (end - start):
            return face
    return None


def chosen_face(row, faces: int) -> int | None:
    """Which person (tile, left to right) the row's face box lies on."""
    if row["face_box"] is None:
        return None
    return int((row["face_box"][0] + row["face_box"][2]) / 2 * faces)


@pytest.fixture(scope="module")
def stage():
    return Faces(FaceConfig(), decode=DecodeConfig())


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    return conversation(tmp_path_factory.mktemp("two") / "two.mp4", [0, 1, 0, 1], faces=2)


def accuracy(stage, clip) -> tuple[float, list[dict]]:
    """The share of speech segments (the turns, and 1 s windows within one turn) whose crops are
    the speaker's; and the rows."""
    turns = stage(decode_rows(clip, [(s, e) for s, e, _ in clip.turns])).to_pylist()
    windows = [r for r in stage(decode_rows(clip, window_s=1.0)).to_pylist()
               if speaking(clip, r["start"], r["end"]) is not None]
    rows = turns + windows
    right = [chosen_face(r, clip.faces) == speaking(clip, r["start"], r["end"]) for r in rows]
    return float(np.mean(right)), rows


def test_the_speakers_face_is_chosen_when_two_take_turns(stage, two):
    share, rows = accuracy(stage, two)
    assert len(rows) >= 10
    assert share >= 0.9
    for row in rows:
        assert row["face_tracks"] == 2 and row["face_select"] == "speaker"
        assert row["face_track"] == chosen_face(row, 2)  # tracks are numbered left to right
        assert row["faces_found"] == row["frames_sampled"] and row["face_sync_ms"] > 0
        x1, y1, x2, y2 = row["face_box"]
        assert 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1 and 0.1 < x2 - x1 < 0.4


@pytest.mark.slow
def test_the_speakers_face_is_chosen_among_three(stage, tmp_path):
    three = conversation(tmp_path / "three.mp4", [0, 1, 2, 0, 1, 2], faces=3)
    share, rows = accuracy(stage, three)
    assert len(rows) >= 15 and share >= 0.9
    assert {r["face_tracks"] for r in rows} == {3}
    table = Speakers(SpeakersConfig())(decode_rows(three, [(s, e) for s, e, _ in three.turns]))
    labelled = label_speakers(stage(table)).to_pylist()
    assert [r["speaker"] for r in labelled] == ["S0", "S1", "S2", "S0", "S1", "S2"]
    assert [json.loads(r["speaker_turns"])[0][3] for r in labelled] == [face for _, _, face in three.turns]


@pytest.mark.slow
def test_listeners_mouthing_at_random_do_not_take_the_turn(stage, tmp_path):
    fidgety = conversation(tmp_path / "fidget.mp4", [0, 1, 0, 1], faces=2, fidget=0.6, seed=1)
    share, rows = accuracy(stage, fidgety)
    assert share >= 0.9 and sum(r["face_select"] == "speaker" for r in rows) >= 0.9 * len(rows)


def test_a_silent_video_with_two_faces_falls_back_to_the_largest(stage, tmp_path):
    silent = conversation(tmp_path / "silent.mp4", [0, 1], faces=2, silent=True)  # mouths move, nobody heard
    table = decode_rows(silent, [(s, e) for s, e, _ in silent.turns])
    frames = np.frombuffer(bytearray(table.column("frames")[0].as_py()), np.uint8).reshape(
        table.column("frames_sampled")[0].as_py(), table.column("frame_height")[0].as_py(), -1, 3)
    tracks = FaceCropper().segment(frames).tracks
    biggest = max(range(len(tracks)), key=lambda k: tracks[k].area())
    for row in stage(table).to_pylist():
        assert row["face_tracks"] == 2 and row["face_select"] == "largest"
        assert row["face_track"] == biggest


def test_one_face_is_cropped_as_before_and_never_decoded_again(stage, tmp_path):
    alone = conversation(tmp_path / "alone.mp4", [0, 0], faces=1)
    table = decode_rows(alone, [(s, e) for s, e, _ in alone.turns])
    rows = stage(table).to_pylist()
    before = FaceCropper(FaceConfig(select="largest"))  # the stage before face tracks: frame by frame
    for row, frames_bytes, n, h, w in zip(rows, *(table.column(c).to_pylist() for c in
                                                  ("frames", "frames_sampled", "frame_height", "frame_width"))):
        expected = before(np.frombuffer(bytearray(frames_bytes), np.uint8).reshape(n, h, w, 3))
        np.testing.assert_array_equal(unpack_faces(row["faces"]), expected.crops)
        assert row["faces_found"] == int(expected.face_found.sum()) == n
        assert (row["face_tracks"], row["face_track"], row["face_select"]) == (1, 0, "largest")
        assert row["face_sync_ms"] == 0


def test_the_speaker_side_wins(stage, two):
    (s, e, face) = two.turns[0]  # the left person speaks; the manifest says the right one is the actor
    table = decode_rows(two, [(s, e)])
    table = table.set_column(table.schema.get_field_index("speaker_side"), "speaker_side", pa.array(["right"]))
    (row,) = stage(table).to_pylist()
    assert face == 0 and row["face_select"] == "right" and chosen_face(row, 2) == 1



@pytest.fixture(scope="module")
def labelled(stage, two) -> tuple[pa.Table, list[dict]]:
    """The two-person clip's turns through the speaker and face stages, labelled over the video
    (what the numbering does once a job is whole); the speaker stage's output, and the rows."""
    table = Speakers(SpeakersConfig())(decode_rows(two, [(s, e) for s, e, _ in two.turns]))
    return table, label_speakers(stage(table)).to_pylist()


def test_the_video_labels_follow_speakers_threshold(stage, labelled):
    """speakers.threshold reaches the numbering's clustering: two voices at the default, one when
    every cluster may merge (a cosine distance of 1.99)."""
    table, rows = labelled
    assert len({r["speaker"] for r in rows} - {None}) == 2
    merged = label_speakers(stage(table), 1.99).column("speaker").to_pylist()
    assert set(merged) - {None} == {"S0"}


def test_each_turn_has_its_speaker_and_the_speakers_face(labelled, two):
    """Who speaks when, per segment: the voices labelled over the video, in order of appearance,
    and each speaker linked to the face whose mouth moves with their speech."""
    table, rows = labelled
    assert [r["speaker"] for r in rows] == ["S0", "S1", "S0", "S1"]
    assert all(r["speaker_ms"] > 0 for r in rows)
    for row, (s, e, face) in zip(rows, two.turns):
        assert row["face_track"] == face  # the face chosen by the mouth is the speaker's
        (turn,) = json.loads(row["speaker_turns"])
        assert turn[2] == row["speaker"] and turn[3] == face  # the turn's face track, over the video
        assert abs(turn[0] - s) < 0.1 and abs(turn[1] - e) < 0.1
    assert "voice_embeddings" in table.column_names and not {"voice_spans", "voice_embeddings"} & set(rows[0])


def test_the_timeline_shows_each_segments_speaker(labelled):
    _, rows = labelled
    for r in rows:
        r.update(status="ok", top_emotion="hap", prob_hap=0.9)
    html = timeline(rows, ["hap"], 12.0)
    spans = re.findall(r'data-speaker="(S\d)"[^>]*>([^<]*)<', html)
    assert spans == [("S0", "S0 · face 0"), ("S1", "S1 · face 1"), ("S0", "S0 · face 0"), ("S1", "S1 · face 1")]
    assert "<th>speaker</th>" in segment_table(rows, ["hap"])
    assert "data-speaker" not in timeline([{**r, "speaker": None} for r in rows], ["hap"], 12.0)


def test_speakers_off_writes_null_columns_and_a_rowless_voice_is_no_speaker():
    from fv2es.pipeline.packing import pack
    from tests.pipeline.talking_faces import voice

    batch = pa.table({"waveform": [pack(voice(0, 0)), pack(voice(1, 0)), None], "start": [0.0, 5.0, 9.0],
                      "status": ["ok", "ok", "ok"], "has_audio": [True, True, False], "face_select": [None] * 3,
                      "face_track": pa.nulls(3, pa.int32())})
    off = Speakers(SpeakersConfig(mode="off"))(batch)
    assert off.column("voice_spans").null_count == 3 and off.column("speaker_ms").null_count == 3
    assert label_speakers(off).column("speaker").to_pylist() == [None, None, None]
    on = label_speakers(Speakers(SpeakersConfig())(batch)).to_pylist()
    assert [r["speaker"] for r in on] == ["S0", "S1", None]
    assert json.loads(on[1]["speaker_turns"])[0][2:] == ["S1", None]  # no face chose it: no track
    assert 5.0 <= json.loads(on[1]["speaker_turns"])[0][0] < 5.1  # seconds from the media start


def test_per_person_rows_score_every_visible_face(stage, two):
    """``segments.per_person``: one row per face track of a segment, each with that person's
    crops; the numbering waits for every person of every segment, in any order."""
    from fv2es.pipeline.numbering import SegmentNumbering

    utterances = [Utterance(f"u{k}", str(two.path), s, e) for k, (s, e, _) in enumerate(two.turns[:2])]
    decoded = pa.concat_tables(list(Decode(DecodeConfig(), SegmentsConfig(), ResourcesConfig())(
        pa.Table.from_pylist(jobs_from_utterances(utterances)))))
    rows = Faces(FaceConfig(), decode=DecodeConfig(), per_person=True)(Speakers(SpeakersConfig())(decoded))
    assert rows.num_rows == 4 and rows.column("persons").to_pylist() == [2, 2, 2, 2]
    numbering = SegmentNumbering()
    assert numbering.add(rows.take([3, 0])) == []  # segment 1's first person and segment 0's second: not whole
    assert numbering.add(rows.take([1])) == []
    (job,) = numbering.add(rows.take([2]))
    out = job.to_pylist()
    assert [r["segment_index"] for r in out] == [0, 1, 2, 3] and {r["segment_count"] for r in out} == {4}
    assert [r["face_track"] for r in out] == [0, 1, 0, 1]
    assert [r["face_select"] for r in out] == ["speaker", "person", "person", "speaker"]  # face 0 speaks first
    assert [r["speaker"] for r in out] == ["S0", "S0", "S1", "S1"]
    assert not {"person", "persons", "chunk_row"} & set(job.column_names)
    left, right = unpack_faces(out[0]["faces"]), unpack_faces(out[1]["faces"])
    assert left.shape == right.shape and np.abs(left.astype(int) - right.astype(int)).mean() > 20  # two people
    assert out[0]["faces"] == stage(number_all(decoded)).column("faces")[0].as_py()  # the speaker: as without it


def test_a_segment_is_cut_where_the_speaker_changes_and_nowhere_else():
    from fv2es.asr.segments import split_at_changes

    changes = [(2.85, 3.15), (5.2, 5.5), (9.95, 10.0)]
    assert split_at_changes([(0.2, 9.0)], changes) == [(0.2, 2.85), (3.15, 5.2), (5.5, 9.0)]
    assert split_at_changes([(0.2, 3.0), (3.2, 5.3)], changes) == [(0.2, 3.0), (3.2, 5.3)]  # a side too short
    assert split_at_changes([(0.2, 10.1)], changes, min_s=0.05) == [(0.2, 2.85), (3.15, 5.2), (5.5, 9.95),
                                                                     (10.0, 10.1)]
    assert split_at_changes([(0.0, 4.0)], []) == [(0.0, 4.0)]


def auto_segments(clip, speakers: str, chunk_s: float = 60.0) -> list[dict]:
    """``clip`` cut as ``segments.mode=auto`` cuts it (speech-to-text, the packaged tiny.en): the
    job's decode, speaker and transcription stages in their order, then numbered."""
    from fv2es.config import ScoreConfig, config_from_dict
    from fv2es.pipeline.dataset import media_stages
    from fv2es.pipeline.local import local_job, run_stages
    from fv2es.pipeline.plan import list_jobs

    cfg = config_from_dict({"speakers": {"mode": speakers}, "decode": {"max_side": 320},
                            "resources": {"chunk_s": chunk_s}})
    stages = [s for s in media_stages(local_job(cfg, cfg.segments)) if s.name in ("decode", "speakers", "transcribe")]
    assert [s.name for s in stages] == ["decode", "speakers", "transcribe"]
    return number_all(run_stages(list_jobs(str(clip.path), ScoreConfig()), stages)).to_pylist()


@pytest.fixture(scope="module")
def close(tmp_path_factory):
    """Two people with short pauses between turns: the recogniser hears one utterance."""
    return conversation(tmp_path_factory.mktemp("close") / "close.mp4", [0, 1, 0, 1], faces=2, gap_s=0.3)


def test_auto_segments_are_cut_at_each_change_of_speaker(close):
    off = auto_segments(close, "off")
    assert len(off) == 1 and off[0]["start"] < close.turns[0][0] and off[0]["end"] > close.turns[-1][1] - 0.2
    rows = auto_segments(close, "auto")
    assert [(r["segment_index"], r["segment_count"]) for r in rows] == [(k, 4) for k in range(4)]
    assert [r["speaker"] for r in rows] == ["S0", "S1", "S0", "S1"]
    for a, b, (_, end, _), (start, _, _) in zip(rows, rows[1:], close.turns, close.turns[1:]):
        assert abs(a["end"] - end) <= 0.5 and abs(b["start"] - start) <= 0.5  # measured: within 0.02 s
    for r in rows:
        assert len(json.loads(r["speaker_turns"])) == 1 and r["text_source"] == "asr" and r["text"]
        assert r["speaker_ms"] > 0 and r["frames_sampled"] > 0
        assert r["waveform_samples"] == pytest.approx((r["end"] - r["start"]) * 16000, abs=2)
    assert " ".join(r["text"] for r in rows) == off[0]["text"]  # the words shared out, none lost
    assert sum(r["speaker_ms"] for r in rows) > 0 and sum(r["asr_ms"] for r in rows) > 0


def test_speaker_cuts_and_chunk_cuts_number_together(close):
    """Two decode chunks (the boundary in the pause after turn 1), each cut at its change of
    speaker: the rows of both are numbered as one job, every row kept."""
    rows = auto_segments(close, "auto", chunk_s=5.4)
    assert [(r["segment_index"], r["segment_count"]) for r in rows] == [(k, 4) for k in range(4)]
    assert [r["speaker"] for r in rows] == ["S0", "S1", "S0", "S1"]
    assert rows[1]["end"] <= 5.4 <= rows[2]["start"]
    for r, (start, end, _) in zip(rows, close.turns):
        assert abs(r["start"] - start) <= 0.5 and abs(r["end"] - end) <= 0.5


def test_one_speakers_segments_are_not_cut(tmp_path):
    alone = conversation(tmp_path / "alone.mp4", [0, 0], faces=1, gap_s=0.3)
    on, off = auto_segments(alone, "auto"), auto_segments(alone, "off")
    keys = ("segment_index", "segment_count", "start", "end", "text", "frames_sampled", "waveform_samples")
    assert [tuple(r[k] for k in keys) for r in on] == [tuple(r[k] for k in keys) for r in off]
    assert {r["speaker"] for r in on} == {"S0"} and {r["speaker"] for r in off} == {None}


def test_a_segment_cut_from_a_chunk_keeps_the_voice_pieces_inside_it():
    from fv2es.pipeline.packing import pack, unpack
    from fv2es.pipeline.stages.speakers import voice_in

    emb = np.eye(3, 256, dtype=np.float16)
    row = {"voice_spans": pack(np.array([[0.5, 1.5], [2.0, 3.0], [3.5, 4.0]], np.float32)),
           "voice_embeddings": pack(emb)}
    part = voice_in(row, 1.0, 2.5)
    np.testing.assert_array_equal(unpack(part["voice_spans"], (2,), np.float32), [[1.0, 1.5], [2.0, 2.5]])
    np.testing.assert_array_equal(unpack(part["voice_embeddings"], (256,), np.float16), emb[:2])
    assert len(unpack(voice_in(row, 1.6, 1.9)["voice_spans"], (2,), np.float32)) == 0  # a pause: no pieces
    assert voice_in({"voice_spans": None, "voice_embeddings": None}, 0.0, 1.0) == {
        "voice_spans": None, "voice_embeddings": None}
