import json

import numpy as np
import pyarrow as pa
import pytest

from fv2es.config import ResourcesConfig, ScoreConfig, SegmentsConfig
from fv2es.media.decode import DecodeConfig
from fv2es.media.democorpus import make_demo_corpus
from fv2es.media.faces import FaceConfig
from fv2es.media.spectrogram import SpectrogramConfig, num_pieces
from fv2es.pipeline.numbering import number_all
from fv2es.pipeline.packing import unpack_faces, unpack_frame_times, unpack_waveform
from fv2es.pipeline.plan import list_jobs
from fv2es.pipeline.stages import DECODED_SCHEMA, Decode, Faces, Spectrogram


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    make_demo_corpus(root, videos=3, seed=1, seconds=(2.0, 2.0))
    (root / "broken.mp4").write_bytes(b"not a video at all")
    return root


def run_decode(jobs, segments=None, resources=None, spectrogram=True):
    """Decode (then, by default, the spectrogram stage) as the pipeline runs them."""
    stage = Decode(DecodeConfig(max_side=320), segments or SegmentsConfig(), resources or ResourcesConfig())
    tables = list(stage(pa.Table.from_pylist(jobs)))
    assert all(t.schema == DECODED_SCHEMA for t in tables)
    if spectrogram:
        tables = [Spectrogram(SpectrogramConfig())(t) for t in tables]
    return number_all(pa.concat_tables(tables)).to_pylist()


def test_decode_whole_clips_with_sidecar_text_and_a_failed_row(demo):
    jobs = list_jobs(str(demo), ScoreConfig())
    rows = run_decode(jobs)
    assert [r["video_uri"].rsplit("/", 1)[1] for r in rows] == ["broken.mp4", "clip_00000.mp4", "clip_00001.mp4",
                                                               "clip_00002.mp4"]
    bad, *good = rows
    assert bad["status"] == "invalid_container" and bad["error"] and bad["segment_count"] == 1
    manifest = [json.loads(line) for line in (demo / "manifest.jsonl").read_text().splitlines()]
    for row, expected in zip(good, manifest):
        assert row["status"] == "ok" and row["segment_count"] == 1
        assert row["text"] == expected["text"]  # from the .txt sidecar beside the clip
        assert row["text_source"] == "caption" and row["cuts"] == ""
        assert row["end"] == pytest.approx(2.0, abs=0.05)
        assert row["frames_sampled"] == 4  # every 500 ms over 2 s
        assert row["piece_count"] == num_pieces(2.0)
        assert (row["frame_height"], row["frame_width"]) == (120, 160)
        assert len(row["frames"]) == 4 * 120 * 160 * 3


def test_decode_windows_and_chunks(demo):
    (job,) = [j for j in list_jobs(str(demo), ScoreConfig()) if j["video_uri"].endswith("clip_00001.mp4")]
    rows = run_decode([job], SegmentsConfig(mode="window", window_s=0.5), ResourcesConfig(chunk_s=1.0))
    assert [r["segment_index"] for r in rows] == [0, 1, 2, 3]
    assert [x for r in rows for x in (r["start"], r["end"])] == pytest.approx([0, 0.5, 0.5, 1.0, 1.0, 1.5, 1.5, 2.0])
    assert all(r["segment_count"] == 4 and r["status"] == "ok" and r["frames_sampled"] == 1 for r in rows)


def test_decode_given_segments_outside_the_media(demo):
    (job,) = [j for j in list_jobs(str(demo), ScoreConfig()) if j["video_uri"].endswith("clip_00000.mp4")]
    job = {**job, "segments": json.dumps([["a", 0.0, 1.0, "hi"], ["b", 50.0, 60.0, ""]])}
    a, b = run_decode([job])
    assert (a["utterance_id"], a["status"], a["text"], a["text_source"]) == ("a", "ok", "hi", "manifest")
    assert (b["utterance_id"], b["status"]) == ("b", "bad_segment")


def test_decode_rows_carry_frame_times_and_the_waveform(demo):
    (job,) = [j for j in list_jobs(str(demo), ScoreConfig()) if j["video_uri"].endswith("clip_00002.mp4")]
    (row,) = run_decode([job], spectrogram=False)
    assert unpack_frame_times(row) == pytest.approx([0.0, 0.5, 1.0, 1.5], abs=0.05)
    audio = unpack_waveform(row)
    assert row["waveform_samples"] == len(audio) == pytest.approx(2.0 * 16000, abs=800)
    assert audio.dtype == np.float32 and 0.01 < np.abs(audio).max() <= 1.0  # the demo clip's voice


def test_spectrogram_stage_turns_the_waveform_into_pieces(demo):
    (job,) = [j for j in list_jobs(str(demo), ScoreConfig()) if j["video_uri"].endswith("clip_00002.mp4")]
    (decoded,) = list(Decode(DecodeConfig(max_side=320), SegmentsConfig(), ResourcesConfig())(pa.Table.from_pylist([job])))
    out = Spectrogram(SpectrogramConfig())(decoded)
    assert "waveform" not in out.column_names and "waveform_samples" not in out.column_names
    (row,) = out.to_pylist()
    assert row["piece_count"] == num_pieces(2.0) and len(row["pieces"]) == row["piece_count"] * 4 * 32 * 32 * 4
    assert row["decode_ms"] > decoded.column("decode_ms")[0].as_py()  # the spectrogram's time is added


def test_face_stage_crops_the_demo_face(demo):
    jobs = [j for j in list_jobs(str(demo), ScoreConfig())]
    decoded = pa.Table.from_pylist(run_decode(jobs, spectrogram=False), schema=DECODED_SCHEMA)
    out = Faces(FaceConfig())(decoded)
    assert "frames" not in out.column_names and "frame_times" not in out.column_names
    rows = out.to_pylist()
    assert rows[0]["faces_found"] == 0 and rows[0]["faces"] == b""
    for row in rows[1:]:
        crops = unpack_faces(row["faces"])
        assert crops.shape == (4, 48, 48, 3)
        assert row["faces_found"] >= 3
        assert crops.std() > 10  # a picture, not a blank


def test_face_stage_uses_the_speaker_side(demo):
    (job,) = [j for j in list_jobs(str(demo), ScoreConfig()) if j["video_uri"].endswith("clip_00000.mp4")]
    row = run_decode([job], spectrogram=False)[0]
    frames = np.frombuffer(row["frames"], np.uint8).reshape(4, 120, 160, 3)
    wide = np.zeros((4, 120, 320, 3), np.uint8)
    wide[:, :, :160] = frames  # the face on the left half only
    rows = [{**row, "frames": wide.tobytes(), "frame_width": 320, "speaker_side": side} for side in ("left", "right")]
    left, right = Faces(FaceConfig())(pa.Table.from_pylist(rows, schema=DECODED_SCHEMA)).to_pylist()
    assert left["faces_found"] >= 3 and right["faces_found"] == 0


def test_failed_inputs_of_a_block_leave_decode_as_one_table_in_their_place(demo):
    """A decode call takes a block of jobs; consecutive failed ones (no media) leave as one table,
    so a block of fast failing inputs is one table, not one a job, and every job still has its row."""
    (good,) = [j for j in list_jobs(str(demo), ScoreConfig()) if j["video_uri"].endswith("clip_00000.mp4")]
    missing = [{**good, "video_uri": str(demo / f"missing_{k}.mp4"), "job_id": f"{k:016x}"} for k in range(5)]
    stage = Decode(DecodeConfig(max_side=320), SegmentsConfig(), ResourcesConfig())
    tables = list(stage(pa.Table.from_pylist([*missing[:3], good, *missing[3:]])))
    assert [t.num_rows for t in tables] == [3, 1, 2]
    assert [t.column("status").to_pylist() for t in tables] == [["unreadable"] * 3, ["ok"], ["unreadable"] * 2]
    uris = [u.rsplit("/", 1)[1] for t in tables for u in t.column("video_uri").to_pylist()]
    assert uris == ["missing_0.mp4", "missing_1.mp4", "missing_2.mp4", "clip_00000.mp4", "missing_3.mp4",
                    "missing_4.mp4"]
    assert all(t.schema == DECODED_SCHEMA for t in tables)
    rows = number_all(pa.concat_tables(tables)).to_pylist()
    assert len(rows) == 6 and all(r["segment_index"] == 0 and r["segment_count"] == 1 for r in rows)
