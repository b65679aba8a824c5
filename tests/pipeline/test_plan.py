import json

import fsspec
import pytest

from fv2es.config import ScoreConfig, SegmentsConfig
from fv2es.data.transcripts import Segment
from fv2es.errors import InputError
from fv2es.pipeline.plan import (
    SegmentSpec,
    cuts_at_speech,
    given_segments,
    list_jobs,
    list_videos,
    needs_transcript,
    plan_segments,
    windows,
)


def test_windows_cover_the_span_and_the_last_is_shorter():
    assert windows(0.0, 25.0, 10.0) == [(0.0, 10.0), (10.0, 20.0), (20.0, 25.0)]
    assert windows(0.0, 20.0, 10.0) == [(0.0, 10.0), (10.0, 20.0)]
    assert windows(0.0, 0.5, 10.0) == [(0.0, 0.5)]


def test_auto_takes_timed_captions_then_the_whole_video():
    cfg = SegmentsConfig()
    cues = [Segment(1.0, 2.5, "hello"), Segment(3.0, 4.0, "there")]
    assert plan_segments(None, 30.0, cfg, cues) == [SegmentSpec(1.0, 2.5, "hello", None, "caption"),
                                                     SegmentSpec(3.0, 4.0, "there", None, "caption")]
    untimed = [Segment(None, None, "all of it")]
    assert plan_segments(None, 30.0, cfg, untimed) == [SegmentSpec(0.0, 30.0, "all of it", None, "caption")]
    assert plan_segments(None, 30.0, cfg) == [SegmentSpec(0.0, 30.0, "", None, "none")]


def test_long_whole_videos_are_cut_at_max_segment():
    cfg = SegmentsConfig(max_segment_s=100.0)
    specs = plan_segments([SegmentSpec(None, None, "t", "vid1")], 250.0, cfg)
    assert [(s.start, s.end, s.utterance_id) for s in specs] == [
        (0.0, 100.0, "vid1#0"), (100.0, 200.0, "vid1#1"), (200.0, 250.0, "vid1#2")]
    assert all(s.text == "t" and s.text_source == "manifest" for s in specs)


def test_window_mode_gives_every_window_the_captions_overlapping_it():
    cfg = SegmentsConfig(mode="window", window_s=5.0)
    cues = [Segment(1.0, 2.0, "a"), Segment(4.0, 7.0, "b"), Segment(11.0, 12.0, "c")]
    specs = plan_segments(None, 12.0, cfg, cues)
    # b runs across the 5.0 boundary: both windows it overlaps get it.
    assert [(s.start, s.end, s.text) for s in specs] == [(0.0, 5.0, "a b"), (5.0, 10.0, "b"), (10.0, 12.0, "c")]
    assert {s.text_source for s in specs} == {"caption"}


def test_a_continuous_caption_gives_text_to_every_two_second_window():
    # The case: one sentence over ~9 s; with midpoints, 3 of 5 windows had no text.
    specs = plan_segments(None, 9.0, SegmentsConfig(mode="window", window_s=2.0), [Segment(0.0, 8.8, "one sentence")])
    assert [s.text for s in specs] == ["one sentence"] * 5


def test_captioned_windows_without_a_cue_are_caption_with_no_text():
    specs = plan_segments(None, 4.0, SegmentsConfig(mode="window", window_s=2.0), [Segment(0.5, 1.0, "hi")])
    assert [(s.text, s.text_source) for s in specs] == [("hi", "caption"), ("", "caption")]


def test_who_gets_a_transcript():
    assert needs_transcript("auto", "none") and needs_transcript("always", "manifest")
    assert not needs_transcript("auto", "caption") and not needs_transcript("auto", "manifest")
    assert not needs_transcript("never", "none")
    auto = SegmentsConfig()
    assert cuts_at_speech(None, [], auto, "auto") and cuts_at_speech(None, [], auto, "always")
    assert not cuts_at_speech(None, [], auto, "never")
    assert not cuts_at_speech(None, [Segment(None, None, "x")], auto, "auto")  # a caption file decides
    assert not cuts_at_speech([SegmentSpec(0.0, 1.0)], [], auto, "auto")  # so do manifest segments
    assert not cuts_at_speech(None, [], SegmentsConfig(mode="window"), "auto")


def test_manifest_text_is_the_manifest_source():
    job = {"segments": json.dumps([["a", 0.0, 1.0, "hi"], ["b", 1.0, 2.0, ""]])}
    assert [(s.text, s.text_source) for s in given_segments(job)] == [("hi", "manifest"), ("", "none")]


def test_window_mode_cuts_an_untimed_manifest_row():
    specs = plan_segments([SegmentSpec(None, None, "t", "v")], 2.5, SegmentsConfig(mode="window", window_s=1.0))
    assert [(s.start, s.end, s.utterance_id, s.text) for s in specs] == [
        (0.0, 1.0, "v#0", "t"), (1.0, 2.0, "v#1", "t"), (2.0, 2.5, "v#2", "t")]


def test_given_segments_are_kept_and_open_ends_resolved():
    cfg = SegmentsConfig(mode="window")
    given = [SegmentSpec(2.0, 4.0, "x", "u1", "manifest"), SegmentSpec(5.0, None, "", "u2")]
    specs = plan_segments(given, 9.0, cfg, [Segment(6.0, 7.0, "caption")])
    assert specs == [SegmentSpec(2.0, 4.0, "x", "u1", "manifest"), SegmentSpec(5.0, 9.0, "caption", "u2", "caption")]


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
