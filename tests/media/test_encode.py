"""write_clip round trips, checked with PyAV directly (independent of fv2es.media.decode)."""

from __future__ import annotations

import io

import av
import fsspec
import numpy as np
import pytest

from fv2es.media.encode import write_clip
from tests.media.conftest import frame_index, marker_frames, ramp_frames, sine


def _read(src):
    with av.open(src) as c:
        info = {
            "duration": c.duration / 1e6 if c.duration is not None else None,
            "video": [
                (s.codec_context.name, s.width, s.height, s.codec_context.pix_fmt) for s in c.streams.video
            ],
            "audio": [(s.codec_context.name, s.sample_rate, s.channels) for s in c.streams.audio],
        }
        if c.streams.video:
            frames = list(c.decode(video=0))
            info["times"] = [f.time for f in frames]
            info["rotation"] = frames[0].rotation
            info["first"] = frames[0].to_ndarray(format="rgb24")
            info["indices"] = [frame_index(f.to_ndarray(format="rgb24")) for f in frames]
        if c.streams.audio:
            c.seek(0)
            info["samples"] = sum(f.samples for f in c.decode(audio=0))
    return info


def test_round_trip_video_and_audio(tmp_path):
    path = tmp_path / "clip.mp4"
    write_clip(path, ramp_frames(45, 48, 64), 15, sine(440, 3.0, 16000), 16000)
    info = _read(str(path))
    assert info["video"] == [("h264", 64, 48, "yuv420p")]
    assert info["audio"] == [("aac", 16000, 1)]
    assert info["duration"] == pytest.approx(3.0, abs=0.1)
    assert len(info["times"]) == 45
    assert info["times"][:3] == pytest.approx([0.0, 1 / 15, 2 / 15])
    assert info["indices"] == list(range(30)) + [i % 32 for i in range(30, 45)]
    # AAC pads to whole 1024-sample frames; the tone itself is 48000 samples.
    assert 48000 <= info["samples"] <= 48000 + 2048


def test_variable_frame_rate_times_are_exact(tmp_path):
    path = tmp_path / "vfr.mp4"
    pts_ms = [0, 33, 250, 260, 900]
    write_clip(path, ramp_frames(5), 30, pts_ms=pts_ms)
    info = _read(str(path))
    assert info["times"] == pytest.approx([p / 1000 for p in pts_ms], abs=1e-9)
    assert info["indices"] == [0, 1, 2, 3, 4]
    assert info["audio"] == []
    # The last frame lasts one nominal frame (1/30 s).
    assert info["duration"] == pytest.approx(0.9 + 1 / 30, abs=0.01)


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotation_is_written_as_display_matrix(tmp_path, rotation):
    path = tmp_path / "rot.mp4"
    write_clip(path, marker_frames(3), 10, rotation=rotation)
    info = _read(str(path))
    # PyAV reports the counter-clockwise angle in [-180, 180].
    assert info["rotation"] % 360 == rotation
    # The stored picture is unchanged: the marker is still in the top-left corner.
    assert info["video"][0][1:3] == (64, 48)
    assert info["first"][:8, :8].mean() > 200 and info["first"][-8:, -8:].mean() < 50


def test_audio_only_and_stereo(tmp_path):
    path = tmp_path / "a.mp4"
    write_clip(path, None, 30, np.stack([sine(500, 1.0, 48000), sine(900, 1.0, 48000)]), 48000)
    info = _read(str(path))
    assert info["video"] == []
    assert info["audio"] == [("aac", 48000, 2)]
    assert info["duration"] == pytest.approx(1.0, abs=0.05)


def test_memory_uri_file_object_and_faststart():
    write_clip("memory://encode-test/clip.mp4", ramp_frames(10), 10, sine(440, 1.0, 16000), faststart=True)
    with fsspec.open("memory://encode-test/clip.mp4", "rb") as f:
        data = f.read()
    # faststart puts the index before the media data.
    assert data.index(b"moov") < data.index(b"mdat")
    assert len(_read(io.BytesIO(data))["times"]) == 10

    buf = io.BytesIO()
    write_clip(buf, ramp_frames(4), 10)
    buf.seek(0)
    assert len(_read(buf)["times"]) == 4
    fsspec.filesystem("memory").rm("/encode-test", recursive=True)


def test_bad_arguments_raise(tmp_path):
    with pytest.raises(ValueError, match="frames, audio"):
        write_clip(tmp_path / "x.mp4", None, 10)
    with pytest.raises(ValueError, match="even"):
        write_clip(tmp_path / "x.mp4", np.zeros((2, 47, 64, 3), np.uint8), 10)
    with pytest.raises(ValueError, match="pts_ms"):
        write_clip(tmp_path / "x.mp4", ramp_frames(3), 10, pts_ms=[0, 10])
    with pytest.raises(ValueError, match="increasing"):
        write_clip(tmp_path / "x.mp4", ramp_frames(3), 10, pts_ms=[0, 10, 10])
    with pytest.raises(ValueError, match="multiple of 90"):
        write_clip(tmp_path / "x.mp4", ramp_frames(3), 10, rotation=45)


def test_same_input_gives_same_bytes():
    # A drifting gradient with a little noise: content on which x264's AVX-512 code (left to
    # itself) gave a different file on most runs.
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:120, 0:160]
    base = np.stack([(xx * 1.5) % 256, (yy * 2.0) % 256, (xx + yy) % 256], -1)
    frames = [np.roll(base, (i, 2 * i), (0, 1)) + rng.integers(-5, 6, base.shape) for i in range(30)]
    frames = np.clip(frames, 0, 255).astype(np.uint8)
    encoded = set()
    for _ in range(4):
        buf = io.BytesIO()
        write_clip(buf, frames, 15, sine(440, 2.0, 16000))
        encoded.add(buf.getvalue())
    assert len(encoded) == 1
