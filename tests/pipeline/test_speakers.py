"""The face stage with several people: the speaker's face track, on generated conversations
(talking_faces: real face photographs side by side, mouths moving with their own espeak-ng voice)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from fv2es.config import ResourcesConfig, SegmentsConfig
from fv2es.data.utterance import Utterance
from fv2es.media.decode import DecodeConfig
from fv2es.media.faces import FaceConfig, FaceCropper
from fv2es.pipeline.numbering import number_all
from fv2es.pipeline.packing import unpack_faces
from fv2es.pipeline.plan import jobs_from_utterances
from fv2es.pipeline.stages import Decode, Faces
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
