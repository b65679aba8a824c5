"""decode/probe on good media: timestamp sampling, scaling, rotation, audio, segments, URIs."""

from __future__ import annotations

import math

import fsspec
import numpy as np
import pytest

from fv2es.failures import OK
from fv2es.media.decode import DecodeConfig, decode, probe
from fv2es.media.encode import write_clip
from tests.media.conftest import dominant_hz, frame_index, marker_frames, ramp_frames, sine


def _expected_cfr_times(
    fps: float, interval_s: float, start: float, end: float, n_frames: int
) -> list[float]:
    """First frame at or after each instant start + k * interval, for frames at i / fps."""
    times, k = [], 0
    while start + k * interval_s < end:
        i = math.ceil(round((start + k * interval_s) * fps, 6))
        if i < n_frames and i / fps < end and (not times or i / fps > times[-1]):
            times.append(i / fps)
        k += 1
    return times


@pytest.mark.parametrize("interval_ms", [250, 500, 1000])
def test_constant_rate_sampling(av_clip, interval_ms):
    (row,) = decode(str(av_clip), config=DecodeConfig(img_interval_ms=interval_ms))
    expected = _expected_cfr_times(30, interval_ms / 1000, 0.0, 2.0, 60)
    assert row.status == OK and row.error == ""
    assert len(expected) == {250: 8, 500: 4, 1000: 2}[interval_ms]
    assert row.frame_times_s == pytest.approx(expected, abs=1e-9)
    # The pixels are those frames' pixels (the ramp encodes the index), not neighbours'.
    assert [frame_index(f) for f in row.frames] == [round(t * 30) * 8 % 256 // 8 for t in expected]
    assert row.frames.shape == (len(expected), 48, 64, 3) and row.frames.dtype == np.uint8
    assert row.frame_times_s.dtype == np.float64
    assert (row.start_s, row.end_s) == (0.0, pytest.approx(2.0, abs=0.01))


def test_skipping_non_reference_frames_samples_the_next_decoded_frame(av_clip):
    """decode.skip_nonref: x264's B-frames are not decoded, so an instant whose frame was skipped
    takes the next decoded one (a frame period or two later); its pixels are that frame's, the
    audio is untouched, and the count of samples is the same."""
    exact = decode(str(av_clip), config=DecodeConfig(img_interval_ms=250))[0]
    (row,) = decode(str(av_clip), config=DecodeConfig(img_interval_ms=250, skip_nonref=True))
    assert row.status == OK and len(row.frame_times_s) == len(exact.frame_times_s) == 8
    late = row.frame_times_s - exact.frame_times_s
    assert np.all(late >= -1e-9) and np.all(late <= 3 / 30 + 1e-9)
    assert np.any(late > 1e-9)  # some sampled instant fell on a skipped frame
    assert [frame_index(f) for f in row.frames] == [round(t * 30) * 8 % 256 // 8 for t in row.frame_times_s]
    np.testing.assert_array_equal(row.audio, exact.audio)


def test_variable_frame_rate_sampling_by_timestamp(vfr_clip):
    path, pts_ms = vfr_clip  # [0, 40, 90, 520, 560, 1010, 1400, 1990]
    (row,) = decode(str(path), config=DecodeConfig(img_interval_ms=500))
    # Instants 0, 0.5, 1.0, 1.5 -> first frames at or after them: 0, 0.52, 1.01, 1.99.
    assert row.frame_times_s == pytest.approx([0.0, 0.52, 1.01, 1.99], abs=1e-9)
    assert [frame_index(f) for f in row.frames] == [0, 3, 5, 7]

    (row,) = decode(str(path), config=DecodeConfig(img_interval_ms=250))
    # 0 -> 0; 0.25 -> 0.52 (which also covers 0.5); 0.75 -> 1.01; 1.25 -> 1.4; 1.5 -> 1.99.
    assert row.frame_times_s == pytest.approx([0.0, 0.52, 1.01, 1.4, 1.99], abs=1e-9)
    assert [frame_index(f) for f in row.frames] == [0, 3, 5, 6, 7]
    assert not row.has_audio and row.audio.shape == (0,)


@pytest.mark.parametrize(("max_side", "shape"), [(640, (120, 160)), (80, (60, 80)), (100, (75, 100))])
def test_max_side_scaling_keeps_aspect(video_only_clip, max_side, shape):
    (row,) = decode(str(video_only_clip), config=DecodeConfig(max_side=max_side))
    assert row.frames.shape == (2, *shape, 3)
    # Scaling a flat grey frame keeps its level.
    assert [frame_index(f) for f in row.frames] == [0, 5]


@pytest.mark.parametrize(("rotation", "corner"), [(0, "tl"), (90, "bl"), (180, "br"), (270, "tr")])
def test_rotation_is_applied_upright(tmp_path, rotation, corner):
    path = tmp_path / "rot.mp4"
    write_clip(path, marker_frames(3), 10, rotation=rotation)  # stored 64x48, marker top-left
    info = probe(str(path))
    assert info.rotation == rotation
    assert (info.width, info.height) == ((48, 64) if rotation in (90, 270) else (64, 48))

    (row,) = decode(str(path))
    assert row.frames.shape == (1, info.height, info.width, 3)
    frame = row.frames[0]
    corners = {"tl": frame[:8, :8], "tr": frame[:8, -8:], "bl": frame[-8:, :8], "br": frame[-8:, -8:]}
    assert {name for name, patch in corners.items() if patch.mean() > 200} == {corner}


def test_rotation_with_scaling(tmp_path):
    path = tmp_path / "rot.mp4"
    write_clip(path, marker_frames(1, 120, 160), 10, rotation=90)
    (row,) = decode(str(path), config=DecodeConfig(max_side=80))
    assert row.frames.shape == (1, 80, 60, 3)


def test_audio_resampled_to_16k_from_44k(av_clip):
    (row,) = decode(str(av_clip))
    assert row.has_audio and row.audio.dtype == np.float32
    assert abs(len(row.audio) - 32000) <= 160  # 2 s at 16 kHz, within 10 ms
    assert dominant_hz(row.audio, 16000) == pytest.approx(440, abs=2)
    assert 0.4 < np.abs(row.audio[1000:-1000]).max() < 0.6  # the tone's amplitude is 0.5


def test_stereo_channel_choice_and_mix(stereo_clip):
    left, right, mix = (
        decode(str(stereo_clip), config=DecodeConfig(audio_channel=c))[0].audio for c in (0, 1, None)
    )
    assert abs(len(left) - 16000) <= 160  # 1 s resampled from 48 kHz
    assert dominant_hz(left, 16000) == pytest.approx(500, abs=2)
    assert dominant_hz(right, 16000) == pytest.approx(1500, abs=2)
    # The mono mix is the mean of the two channels.
    np.testing.assert_allclose(mix, (left + right) / 2, atol=1e-6)


def test_mono_source_with_channel_choice(av_clip):
    (row,) = decode(str(av_clip), config=DecodeConfig(audio_channel=1))
    assert dominant_hz(row.audio, 16000) == pytest.approx(440, abs=2)


def test_segments_are_sliced_by_time(av_clip):
    whole = decode(str(av_clip))[0]
    segments = [(0.25, 1.25), (1.0, 2.0), (0.5, 0.6)]
    rows = decode(str(av_clip), segments)
    assert [(r.start_s, r.end_s, r.status) for r in rows] == [(s, e, OK) for s, e in segments]
    for row, (s, e) in zip(rows, segments):
        assert row.frame_times_s == pytest.approx(_expected_cfr_times(30, 0.5, s, e, 60), abs=1e-9)
        assert np.all((row.frame_times_s >= s) & (row.frame_times_s < e))
        # Audio is the same samples as the whole-file decode, cut at the segment's times.
        np.testing.assert_array_equal(row.audio, whole.audio[round(s * 16000) : round(e * 16000)])
    assert [len(r.audio) for r in rows] == [16000, 16000, 1600]
    assert [len(r.frames) for r in rows] == [2, 2, 1]


def test_segment_past_the_end_is_clipped(av_clip):
    (row,) = decode(str(av_clip), [(1.5, 2.3)])
    assert row.status == OK
    assert row.frame_times_s == pytest.approx([1.5])
    assert 0 < len(row.audio) <= round(0.55 * 16000)


def test_late_segments_seek_and_match_a_full_pass(tmp_path):
    path = tmp_path / "long.mp4"
    write_clip(path, ramp_frames(120), 10, sine(440, 12.0, 16000), 16000)
    late = [(10.5, 12.0)]
    (seeked,) = decode(str(path), late)  # starts after 10 s: seeks to the keyframe before
    _, full = decode(str(path), [(0.0, 1.0), *late])  # an early segment: one pass from 0
    assert seeked.status == full.status == OK
    assert seeked.frame_times_s == pytest.approx([10.5, 11.0, 11.5])
    assert [frame_index(f) for f in seeked.frames] == [105 % 32, 110 % 32, 115 % 32]
    np.testing.assert_array_equal(seeked.frames, full.frames)
    assert len(seeked.audio) == 24000
    np.testing.assert_array_equal(seeked.audio, full.audio)


def test_memory_file_and_local_paths_agree(av_clip):
    fs = fsspec.filesystem("memory")
    fs.pipe("/decode-test/av.mp4", av_clip.read_bytes())
    try:
        rows = [decode(u)[0] for u in ("memory://decode-test/av.mp4", str(av_clip), f"file://{av_clip}")]
    finally:
        fs.rm("/decode-test", recursive=True)
    for row in rows:
        assert row.status == OK
        np.testing.assert_array_equal(row.frames, rows[0].frames)
        np.testing.assert_array_equal(row.audio, rows[0].audio)
    assert len(rows[0].frames) == 4


def test_probe_metadata(av_clip, stereo_clip, audio_only_clip):
    info = probe(str(av_clip))
    assert (info.duration_s, info.fps, info.width, info.height, info.rotation) == (
        pytest.approx(2.0, abs=0.01),
        30.0,
        64,
        48,
        0,
    )
    assert (info.video_codec, info.audio_codec, info.has_video, info.has_audio) == ("h264", "aac", True, True)
    assert (info.audio_sample_rate, info.audio_channels) == (44100, 1)
    assert probe(str(stereo_clip)).audio_channels == 2

    info = probe(str(audio_only_clip))
    assert (info.has_video, info.has_audio, info.width, info.height, info.fps) == (False, True, 0, 0, None)
    assert info.duration_s == pytest.approx(1.5, abs=0.05)


def test_config_is_checked():
    with pytest.raises(ValueError):
        DecodeConfig(img_interval_ms=0)
    with pytest.raises(ValueError):
        DecodeConfig(audio_channel=-1)


def test_s3_uri_through_s3fs_matches_local(av_clip, s3_endpoint):
    """A real S3 endpoint (moto's server on 127.0.0.1): the file object is streamed, not copied."""
    s3 = fsspec.filesystem("s3", **s3_endpoint)
    s3.pipe_file("data/videos/av.mp4", av_clip.read_bytes())
    local = decode(str(av_clip), segments=[(0.0, 1.0), (1.0, 2.0)])
    remote = decode("s3://data/videos/av.mp4", segments=[(0.0, 1.0), (1.0, 2.0)], storage_options=s3_endpoint)
    assert [r.status for r in remote] == [OK, OK]
    for a, b in zip(local, remote):
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.audio, b.audio)
    info = probe("s3://data/videos/av.mp4", storage_options=s3_endpoint)
    assert info.has_video and info.has_audio and info.duration_s == pytest.approx(2.0, abs=0.01)
    (missing,) = decode("s3://data/videos/nope.mp4", storage_options=s3_endpoint)
    assert missing.status == "unreadable" and "nope.mp4" in missing.error
