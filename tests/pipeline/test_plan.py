import json

import fsspec
import pytest

from fv2es.config import ScoreConfig
from fv2es.data.transcripts import Segment
from fv2es.pipeline.plan import InputError, SegmentSpec, list_jobs, list_videos, plan_segments, windows


def test_windows_cover_the_span_and_the_last_is_shorter():
    assert windows(0.0, 25.0, 10.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    assert windows(0.0, 20.0, 10.0) == [(0.0, 10.0), (10.0, 20.0)]
    assert windows(0.0, 0.5, 10.0) == [(0.0, 0.5)]


def test_auto_takes_timed_captions_then_the_whole_video():
    cfg = ScoreConfig()
    cues = [Segment(1.0, 2.5, "hello"), Segment(3.0, 4.0, "there")]
    assert plan_segments(None, 30.0, cfg, cues) == [SegmentSpec(1.0, 2.5, "hello"), SegmentSpec(3.0, 4.0, "there")]
    untimed = [Segment(None, None, "all of it")]
    assert plan_segments(None, 30.0, cfg, untimed) == [SegmentSpec(0.0, 30.0, "all of it")]
    assert plan_segments(None, 30.0, cfg) == [SegmentSpec(0.0, 30.0, "")]


def test_long_whole_videos_are_cut_at_max_segment():
    cfg = ScoreConfig(max_segment_s=100.0)
    specs = plan_segments([SegmentSpec(None, None, "t", "vid1")], 250.0, cfg)
    assert [(s.start, s.end, s.utterance_id) for s in specs] == [
        (0.0, 100.0, "vid1#0"), (100.0, 200.0, "vid1#1"), (200.0, 250.0, "vid1#2")]
    assert all(s.text == "t" for s in specs)


def test_window_mode_takes_caption_text_by_span():
    cfg = ScoreConfig(segments="window", window_s=5.0)
    cues = [Segment(1.0, 2.0, "a"), Segment(4.0, 7.0, "b"), Segment(11.0, 12.0, "c")]
    specs = plan_segments(None, 12.0, cfg, cues)
    assert [(s.start, s.end, s.text) for s in specs] == [(0.0, 5.0, "a"), (5.0, 10.0, "b"), (10.0, 12.0, "c")]


def test_window_mode_cuts_an_untimed_manifest_row():
    specs = plan_segments([SegmentSpec(None, None, "t", "v")], 2.5, ScoreConfig(segments="window", window_s=1.0))
    assert [(s.start, s.end, s.utterance_id, s.text) for s in specs] == [
        (0.0, 1.0, "v#0", "t"), (1.0, 2.0, "v#1", "t"), (2.0, 2.5, "v#2", "t")]


def test_given_segments_are_kept_and_open_ends_resolved():
    cfg = ScoreConfig(segments="window")
    given = [SegmentSpec(2.0, 4.0, "x", "u1"), SegmentSpec(5.0, None, "", "u2")]
    specs = plan_segments(given, 9.0, cfg, [Segment(6.0, 7.0, "caption")])
    assert specs == [SegmentSpec(2.0, 4.0, "x", "u1"), SegmentSpec(5.0, 9.0, "caption", "u2")]


def test_listing_folders_globs_and_files(tmp_path):
    for name in ["b.mp4", "a.MOV", "sub/c.mkv", "notes.txt", ".hidden.mp4"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    exts = ScoreConfig().video_extensions
    assert list_videos(str(tmp_path), exts) == [str(tmp_path / n) for n in ["a.MOV", "b.mp4", "sub/c.mkv"]]
    assert list_videos(str(tmp_path / "*.mp4"), exts) == [str(tmp_path / "b.mp4")]
    assert list_videos(str(tmp_path / "b.mp4"), exts) == [str(tmp_path / "b.mp4")]
    with pytest.raises(InputError, match="does not exist"):
        list_videos(str(tmp_path / "nope"), exts)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no videos under"):
        list_videos(str(tmp_path / "empty"), exts)


def test_memory_prefix_keeps_its_protocol():
    fs = fsspec.filesystem("memory")
    fs.pipe("/plan-test/v/one.mp4", b"x")
    try:
        assert list_videos("memory://plan-test/v", (".mp4",)) == [fs.unstrip_protocol("/plan-test/v/one.mp4")]
    finally:
        fs.rm("/plan-test", recursive=True)


def test_manifest_rows_group_into_one_job_per_video(tmp_path):
    manifest = tmp_path / "m.jsonl"
    rows = [
        {"id": "u2", "video_uri": "v1.mp4", "start": 5, "end": 8, "text": "later"},
        {"id": "u1", "video_uri": "v1.mp4", "start": 0, "end": 4, "text": "first"},
        {"id": "w", "video_uri": "v2.mp4", "speaker_side": "left", "audio_uri": "v2.wav", "audio_channel": 0},
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    jobs = list_jobs(str(manifest), ScoreConfig())
    assert [j["video_uri"] for j in jobs] == [str(tmp_path / "v1.mp4"), str(tmp_path / "v2.mp4")]
    assert json.loads(jobs[0]["segments"]) == [["u1", 0.0, 4.0, "first"], ["u2", 5.0, 8.0, "later"]]
    assert json.loads(jobs[1]["segments"]) == [["w", None, None, ""]]
    assert (jobs[1]["speaker_side"], jobs[1]["audio_uri"], jobs[1]["audio_channel"]) == (
        "left", str(tmp_path / "v2.wav"), 0)
