"""Bad input is a value: every case below returns rows with a status, never raises or hangs.

Also the isolation layer: a decoder that segfaults or hangs in the child process becomes
``decoder_crashed`` / ``timeout`` rows, and the next call gets a fresh, working child.
"""

from __future__ import annotations

import io
import os
import signal
import time

import av
import numpy as np
import pytest

from fv2es.failures import (
    BAD_SEGMENT,
    CRASHED,
    DECODE_ERROR,
    INVALID_CONTAINER,
    NO_STREAMS,
    OK,
    TIMEOUT,
    TOO_LARGE,
    UNREADABLE,
)
from fv2es.media import isolate
from fv2es.media.decode import TRUNCATED_WARNING, DecodeConfig, decode, failed_rows
from fv2es.media.encode import write_clip
from tests.media.conftest import ramp_frames, sine

pytestmark = pytest.mark.timeout(60)  # "must not hang" is part of the contract

TWO_SEGMENTS = [(0.0, 0.5), (0.5, 1.0)]


def _statuses(rows):
    return [r.status for r in rows]


@pytest.mark.parametrize("segments", [None, TWO_SEGMENTS])
def test_zero_byte_file(tmp_path, segments):
    path = tmp_path / "empty.mp4"
    path.write_bytes(b"")
    rows = decode(str(path), segments)
    assert _statuses(rows) == [INVALID_CONTAINER] * (1 if segments is None else 2)
    assert "zero-byte" in rows[0].error
    assert rows[0].frames.shape == (0, 0, 0, 3) and rows[0].audio.shape == (0,)


def test_random_bytes_named_mp4(tmp_path):
    path = tmp_path / "noise.mp4"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes())
    (row,) = decode(str(path))
    assert row.status == INVALID_CONTAINER and "not a media container" in row.error


def test_no_video_or_audio_stream(tmp_path):
    # A subtitle file is a container FFmpeg opens, with neither video nor audio.
    path = tmp_path / "subs.mp4"
    path.write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    assert _statuses(decode(str(path), TWO_SEGMENTS)) == [NO_STREAMS, NO_STREAMS]


def _clip_bytes(tmp_path, faststart):
    path = tmp_path / f"full{int(faststart)}.mp4"
    write_clip(path, ramp_frames(90), 30, sine(440, 3.0, 16000), 16000, faststart=faststart)
    return path.read_bytes()


def test_truncated_file_without_index(tmp_path):
    # A default mp4 writes its index (moov) last: cut in half, the index is gone.
    data = _clip_bytes(tmp_path, faststart=False)
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    (row,) = decode(str(path))
    assert row.status == INVALID_CONTAINER


def test_truncated_faststart_file_keeps_what_decoded(tmp_path):
    data = _clip_bytes(tmp_path, faststart=True)
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])

    (whole,) = decode(str(path))
    # Scored on what decoded, and flagged: status ok, error "warning: truncated: ...".
    assert whole.status == OK and whole.error.startswith(TRUNCATED_WARNING)
    # Frames up to the cut are kept: 0, 0.5, ... but not all six.
    assert 1 <= len(whole.frames) < 6
    assert whole.frame_times_s == pytest.approx([0.5 * i for i in range(len(whole.frames))])
    assert 0 < len(whole.audio) < 48000

    early, late = decode(str(path), [(0.0, 0.5), (2.5, 3.0)])
    assert (early.status, early.error) == (OK, "")
    assert early.frame_times_s == pytest.approx([0.0]) and len(early.audio) == 8000
    assert late.status == DECODE_ERROR and len(late.frames) == 0


def test_no_audio_stream(video_only_clip):
    (row,) = decode(str(video_only_clip))
    assert (row.status, row.has_video, row.has_audio) == (OK, True, False)
    assert row.audio.shape == (0,) and len(row.frames) == 2


def test_no_video_stream(audio_only_clip):
    (row,) = decode(str(audio_only_clip))
    assert (row.status, row.has_video, row.has_audio) == (OK, False, True)
    assert row.frames.shape == (0, 0, 0, 3) and row.frame_times_s.shape == (0,)
    assert abs(len(row.audio) - 24000) <= 160


def test_one_frame_video(tmp_path):
    path = tmp_path / "one.mp4"
    write_clip(path, ramp_frames(1), 30)
    rows = decode(str(path), [(0.0, 0.03), (0.0, 10.0)])
    assert _statuses(rows) == [OK, OK]
    assert [list(r.frame_times_s) for r in rows] == [[0.0], [0.0]]


def test_silent_audio(tmp_path):
    path = tmp_path / "silent.mp4"
    write_clip(path, ramp_frames(10), 10, np.zeros(16000, np.float32), 16000)
    (row,) = decode(str(path))
    assert row.status == OK and row.has_audio
    assert abs(len(row.audio) - 16000) <= 160 and np.abs(row.audio).max() == 0.0


def _annexb_h264(width=64, height=48, n=3) -> bytes:
    """A raw H.264 stream: its sequence header (SPS) sits in the bytes, not inside mp4 boxes."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="h264") as c:
        s = c.add_stream("libx264", rate=10)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        for _ in range(n):
            c.mux(
                s.encode(
                    av.VideoFrame.from_ndarray(np.full((height, width, 3), 99, np.uint8), format="rgb24")
                )
            )
        c.mux(s.encode(None))
    return buf.getvalue()


def _declare_size(stream: bytes, mbs_w: int, mbs_h: int) -> bytes:
    """Rewrite the SPS's size fields (in 16-pixel macroblocks); the coded pictures stay tiny.

    Exp-Golomb fields change length, so the SPS is re-packed bit by bit (no box sizes to fix
    in a raw stream). Handles what x264 writes: High profile, no scaling matrices, POC type 0/2.
    """

    def ue(bits, pos):
        zeros = bits.index("1", pos) - pos
        return int(bits[pos + zeros : pos + 2 * zeros + 1], 2) - 1, pos + 2 * zeros + 1

    def put_ue(v):
        b = f"{v + 1:b}"
        return "0" * (len(b) - 1) + b

    start = stream.index(b"\x00\x00\x01\x67") + 4  # NAL header 0x67: SPS
    end = stream.index(b"\x00\x00\x01", start)
    rbsp = stream[start:end].replace(b"\x00\x00\x03", b"\x00\x00")
    bits = "".join(f"{b:08b}" for b in rbsp)
    _, pos = ue(bits, 24)  # profile, constraints, level; seq_parameter_set_id
    if rbsp[0] in (100, 110, 122, 244):
        chroma, pos = ue(bits, pos)
        pos += chroma == 3
        _, pos = ue(bits, pos)
        _, pos = ue(bits, pos)
        assert bits[pos + 1] == "0", "scaling matrices not handled"
        pos += 2
    _, pos = ue(bits, pos)  # log2_max_frame_num_minus4
    poc_type, pos = ue(bits, pos)
    assert poc_type in (0, 2)
    if poc_type == 0:
        _, pos = ue(bits, pos)
    _, pos = ue(bits, pos)  # max_num_ref_frames
    pos += 1  # gaps_in_frame_num_allowed
    head = bits[:pos]
    _, pos = ue(bits, pos)
    _, pos = ue(bits, pos)
    tail = bits[pos:].rstrip("0")[:-1]  # drop the RBSP stop bit and alignment
    new = head + put_ue(mbs_w - 1) + put_ue(mbs_h - 1) + tail + "1"
    new += "0" * (-len(new) % 8)
    out = bytearray()
    for byte in (int(new[i : i + 8], 2) for i in range(0, len(new), 8)):
        if len(out) >= 2 and out[-1] == 0 and out[-2] == 0 and byte <= 3:
            out.append(3)  # emulation prevention
        out.append(byte)
    return stream[:start] + bytes(out) + stream[end:]


def test_huge_declared_resolution_is_refused_before_decoding(tmp_path):
    path = tmp_path / "huge.h264"
    path.write_bytes(_declare_size(_annexb_h264(), 563, 563))  # declares 9008x9008 = 81 Mpixel
    t0 = time.perf_counter()
    (row,) = decode(str(path))
    assert row.status == TOO_LARGE and "9008x9008" in row.error
    assert time.perf_counter() - t0 < 1.0  # refused, not decoded at 81 Mpixel

    # Control: the same stream unpatched decodes, so the patch is what was refused.
    path.write_bytes(_annexb_h264())
    (row,) = decode(str(path))
    assert row.status == OK and row.frames.shape[1:] == (48, 64, 3)


def test_limits_from_config(av_clip):
    (row,) = decode(str(av_clip), config=DecodeConfig(max_declared_pixels=64 * 47))
    assert row.status == TOO_LARGE and "64x48" in row.error
    (row,) = decode(str(av_clip), config=DecodeConfig(max_duration_s=1.0))
    assert row.status == TOO_LARGE and "duration" in row.error


@pytest.mark.parametrize(
    "uri", ["/no/such/file.mp4", "memory://nowhere/x.mp4", "nosuchproto://x.mp4", "{tmp}"]
)
def test_unreadable_uri(tmp_path, uri):
    rows = decode(uri.format(tmp=tmp_path), TWO_SEGMENTS)  # "{tmp}" is a directory
    assert _statuses(rows) == [UNREADABLE, UNREADABLE]
    assert rows[0].error.startswith("cannot open")


def test_bad_segments_fail_alone(av_clip):
    segments = [(0.0, 1.0), (2.5, 3.0), (1.0, 0.5), (-1.0, 0.5), (float("nan"), 1.0), (1.0, 1.0), (1.9, 5.0)]
    rows = decode(str(av_clip), segments)
    assert _statuses(rows) == [OK, BAD_SEGMENT, BAD_SEGMENT, BAD_SEGMENT, BAD_SEGMENT, BAD_SEGMENT, OK]
    assert "after the media end" in rows[1].error
    assert [len(r.frames) for r in rows] == [2, 0, 0, 0, 0, 0, 1]  # 1.9 s is a frame time
    assert len(rows[6].audio) > 0 and rows[1].audio.shape == (0,)


# ---- isolation: these run in the decoder child, so they must be importable module-level functions.


def _segfault_decode(uri, segments, config, storage_options):
    os.kill(os.getpid(), signal.SIGSEGV)


def _hanging_decode(uri, segments, config, storage_options):
    time.sleep(60)


def _pid_decode(uri, segments, config, storage_options):
    return failed_rows(segments, OK, str(os.getpid()))


def _raising_decode(uri, segments, config, storage_options):
    raise RuntimeError("boom")


@pytest.fixture
def fresh_worker():
    isolate.shutdown()
    yield
    isolate.shutdown()


def test_isolated_decode_matches_in_process(av_clip, fresh_worker):
    direct = decode(str(av_clip), TWO_SEGMENTS)
    isolated = isolate.decode_isolated(str(av_clip), TWO_SEGMENTS, DecodeConfig())
    assert _statuses(isolated) == [OK, OK]
    for a, b in zip(direct, isolated):
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.audio, b.audio)
    # One child serves successive calls.
    pids = {isolate.decode_isolated("x", None, decode_fn=_pid_decode)[0].error for _ in range(3)}
    assert len(pids) == 1 and str(os.getpid()) not in pids


def _nice_decode(uri, segments, config, storage_options):
    return failed_rows(segments, OK, f"{os.getpid()} {os.getpriority(os.PRIO_PROCESS, 0)}")


def test_decode_nice_lowers_the_child_priority_and_a_new_setting_gets_a_new_child(fresh_worker):
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    calls = [(cfg.nice, isolate.decode_isolated("x", None, cfg, decode_fn=_nice_decode)[0].error.split())
             for cfg in (DecodeConfig(nice=7), DecodeConfig(nice=7), DecodeConfig())]
    (_, (pid1, prio1)), (_, (pid2, prio2)), (_, (pid3, prio3)) = calls
    assert int(prio1) == int(prio2) == min(19, mine + 7) and pid1 == pid2  # one child, reused
    assert int(prio3) == mine and pid3 != pid1  # nice=0 cannot reuse the lowered child
    with pytest.raises(ValueError, match="nice must be 0-19"):
        DecodeConfig(nice=20)


def test_crashing_decoder_becomes_rows_and_next_call_works(av_clip, fresh_worker):
    before = isolate.decode_isolated("x", None, decode_fn=_pid_decode)[0].error
    rows = isolate.decode_isolated(str(av_clip), TWO_SEGMENTS, decode_fn=_segfault_decode)
    assert _statuses(rows) == [CRASHED, CRASHED]
    assert "SIGSEGV" in rows[0].error and str(av_clip) in rows[0].error
    assert [(r.start_s, r.end_s) for r in rows] == TWO_SEGMENTS

    after = isolate.decode_isolated("x", None, decode_fn=_pid_decode)[0].error
    assert after != before  # a new child replaced the dead one
    rows = isolate.decode_isolated(str(av_clip), TWO_SEGMENTS)
    assert _statuses(rows) == [OK, OK] and [len(r.frames) for r in rows] == [1, 1]


def test_hanging_decoder_times_out_and_next_call_works(av_clip, fresh_worker):
    t0 = time.perf_counter()
    (row,) = isolate.decode_isolated(str(av_clip), None, timeout_s=1.0, decode_fn=_hanging_decode)
    assert row.status == TIMEOUT and "1 s" in row.error and np.isnan(row.end_s)
    assert time.perf_counter() - t0 < 10
    (row,) = isolate.decode_isolated(str(av_clip))
    assert row.status == OK and len(row.frames) == 4


def test_exception_in_child_is_a_decode_error(fresh_worker):
    (row,) = isolate.decode_isolated("x", None, decode_fn=_raising_decode)
    assert (row.status, row.error) == (DECODE_ERROR, "RuntimeError: boom")
    (row,) = isolate.decode_isolated("/no/such.mp4")
    assert row.status == UNREADABLE
