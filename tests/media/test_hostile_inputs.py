"""Hostile inputs (issue 14): a file cannot make the decoder open other URLs or files, block on a
FIFO, or flood the job with cues; a truncated upload is scored on what decoded."""

from __future__ import annotations

import http.server
import os
import signal
import threading
import time

import av
import numpy as np
import pytest
from fsspec.implementations.local import LocalFileSystem

from fv2es.data.transcripts import read_sidecar
from fv2es.failures import (
    BAD_SIDECAR,
    CRASHED,
    DECODE_ERROR,
    INVALID_CONTAINER,
    OK,
    TIMEOUT,
    UNREADABLE,
    UNSUPPORTED_CONTAINER,
    MediaError,
)
from fv2es.media import guard, isolate
from fv2es.media.decode import TRUNCATED_WARNING, DecodeConfig, decode, probe
from fv2es.media.encode import write_clip
from tests.media.conftest import ramp_frames, sine

pytestmark = pytest.mark.timeout(60)

TWO_SEGMENTS = [(0.0, 0.5), (0.5, 1.0)]


class Listener:
    """An HTTP server on 127.0.0.1 that records every request and answers 404.

    It serves from a thread that stops itself after ``limit_s`` even if the test never stops it.
    """

    def __init__(self, limit_s: float = 30.0):
        self.requests: list[str] = []
        listener = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 -- http.server's naming
                listener.requests.append(f"{self.path} ({self.headers.get('User-Agent')})")
                self.send_error(404)

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.server.timeout = 0.1
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(time.monotonic() + limit_s,), daemon=True)
        self._thread.start()

    def _serve(self, deadline: float) -> None:
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.server.handle_request()  # returns after server.timeout when nobody calls

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.server.server_close()


@pytest.fixture
def listener():
    server = Listener()
    yield server
    server.close()


def _playlist(tmp_path, listener) -> str:
    """An HLS playlist whose key and segments are on the listener (the issue's reproduction)."""
    path = tmp_path / "talk.m3u8"
    path.write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f'#EXT-X-KEY:METHOD=AES-128,URI="{listener.url}/key.bin"\n'
        f"#EXTINF:2.0,\n{listener.url}/segment0.ts\n#EXTINF:2.0,\n{listener.url}/segment1.ts\n#EXT-X-ENDLIST\n"
    )
    return str(path)


def _concat_list(tmp_path, listener) -> str:
    """An ffconcat list (named .mp4) naming a file beside it that no manifest named. (FFmpeg's
    concat "safe" mode already refuses URLs in such a list; a relative local name it would read.)"""
    write_clip(tmp_path / "private.mp4", ramp_frames(10), 10)
    path = tmp_path / "list.mp4"
    path.write_text("ffconcat version 1.0\nfile private.mp4\n")
    return str(path)


@pytest.mark.parametrize("make", [_playlist, _concat_list])
def test_lists_are_refused_and_nothing_is_fetched(tmp_path, listener, make):
    uri = make(tmp_path, listener)
    rows = decode(uri, TWO_SEGMENTS)
    assert [r.status for r in rows] == [UNSUPPORTED_CONTAINER] * 2
    assert [len(r.frames) for r in rows] == [0, 0]  # the concat list's private.mp4 was not read
    with pytest.raises(MediaError) as info:
        probe(uri)
    assert info.value.kind == UNSUPPORTED_CONTAINER
    assert listener.requests == []


def test_playlist_as_audio_uri_in_the_decoder_process(tmp_path, listener):
    """The audio field goes through the same isolated decoder with its own config."""
    uri = _playlist(tmp_path, listener)
    isolate.shutdown()
    try:
        rows = isolate.decode_isolated(uri, TWO_SEGMENTS, DecodeConfig(audio_channel=1))
        with pytest.raises(MediaError) as info:
            isolate.probe_isolated(uri)
    finally:
        isolate.shutdown()
    assert [r.status for r in rows] == [UNSUPPORTED_CONTAINER] * 2 and "HLS" in rows[0].error
    assert info.value.kind == UNSUPPORTED_CONTAINER
    assert listener.requests == []


@pytest.mark.parametrize("make", [_playlist, _concat_list])
def test_ffmpeg_options_alone_refuse_lists(tmp_path, listener, make):
    """The backstop for a list the first-bytes check misses: FFmpeg's own whitelists."""
    with open(make(tmp_path, listener), "rb") as f, pytest.raises(av.ArgumentError):
        av.open(f, "r", container_options=guard.container_options())
    assert listener.requests == []
    # The same options open an ordinary file.
    with open(_clip(tmp_path), "rb") as f, av.open(f, "r", container_options=guard.container_options()) as c:
        assert len(c.streams.video) == 1


def _clip(tmp_path) -> str:
    path = tmp_path / "clip.mp4"
    write_clip(path, ramp_frames(10), 10)
    return str(path)


def test_refused_kind_names_lists_and_passes_media(tmp_path):
    assert guard.refused_kind(b"\xef\xbb\xbf\n#EXTM3U\n#EXT-X-TARGETDURATION:2") == "an HLS / M3U playlist"
    assert guard.refused_kind(b"ffconcat version 1.0\nfile a.mp4") == "an FFmpeg concat list"
    assert guard.refused_kind(b'<?xml version="1.0"?>\n<MPD xmlns="urn:mpeg:dash">') == "a DASH manifest"
    assert guard.refused_kind(b"v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\n") == "an SDP session description"
    with open(_clip(tmp_path), "rb") as f:
        assert guard.refused_kind(f.read(4096)) is None
    allowed = guard.format_whitelist().split(",")
    assert "hls" not in allowed and "concat" not in allowed and "image2" not in allowed
    assert "mov" in allowed and "matroska" in allowed and "image2pipe" in allowed


# ---- blocking inputs (item 7)


def test_fifo_named_mp4_fails_fast(tmp_path):
    fifo = tmp_path / "stuck.mp4"
    os.mkfifo(fifo)  # no writer: a plain open() would wait forever
    t0 = time.perf_counter()
    rows = decode(str(fifo), TWO_SEGMENTS)
    assert [r.status for r in rows] == [UNREADABLE] * 2
    assert "not a regular file" in rows[0].error and rows[0].error.startswith("cannot open")
    with pytest.raises(MediaError) as info:
        probe(f"file://{fifo}")
    assert info.value.kind == UNREADABLE
    os.mkfifo(tmp_path / "stuck.srt")
    with pytest.raises(MediaError) as info:
        read_sidecar(str(tmp_path / "stuck.srt"))
    assert info.value.kind == BAD_SIDECAR and "not a regular file" in info.value.message
    assert time.perf_counter() - t0 < 5


def test_probe_timeout_comes_from_the_decode_config(tmp_path):
    config = DecodeConfig(probe_timeout_s=7.0)
    assert DecodeConfig().probe_timeout_s < 600  # well under a chunk's decode timeout
    isolate.shutdown()
    try:
        info = isolate.probe_isolated(_clip(tmp_path), config=config)
    finally:
        isolate.shutdown()
    assert info.has_video and info.duration_s == pytest.approx(1.0, abs=0.05)
    with pytest.raises(ValueError):
        DecodeConfig(probe_timeout_s=0)


def test_remote_reads_get_timeouts_unless_the_user_set_them():
    s3 = guard.with_io_timeouts("s3", {"key": "k", "config_kwargs": {"read_timeout": 5}}, 30.0)
    assert s3 == {"key": "k", "config_kwargs": {"read_timeout": 5, "connect_timeout": 30.0}}
    http_options = guard.with_io_timeouts("https", {}, 12.0)
    timeout = http_options["client_kwargs"]["timeout"]
    assert (timeout.sock_connect, timeout.sock_read) == (12.0, 12.0)
    assert guard.with_io_timeouts("memory", {"a": 1}, 3.0) == {"a": 1}


# ---- truncated uploads (item 9)


def _faststart_bytes(tmp_path) -> bytes:
    path = tmp_path / "full.mp4"
    write_clip(path, ramp_frames(90), 30, sine(440, 3.0, 16000), 16000, faststart=True)
    return path.read_bytes()


def test_truncated_faststart_file_is_scored_on_what_decoded(tmp_path):
    data = _faststart_bytes(tmp_path)
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) * 6 // 10])  # index at the front, media cut at 60%

    (whole,) = decode(str(path))
    assert whole.status == OK and whole.error.startswith(TRUNCATED_WARNING)
    assert "declares 3.000 s" in whole.error
    assert whole.frame_times_s == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert 16000 < len(whole.audio) < 48000

    rows = decode(str(path), [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)])
    assert [r.status for r in rows] == [OK, OK, DECODE_ERROR]
    assert rows[0].error == "" and rows[1].error.startswith(TRUNCATED_WARNING)
    assert [len(r.frames) for r in rows] == [2, 2, 0] and len(rows[0].audio) == 16000
    assert "nothing decoded" in rows[2].error


def test_damage_inside_the_data_is_still_a_decode_error(tmp_path):
    """Only the cut is forgiven: corrupt bytes in the middle keep the segment's decode_error."""
    data = bytearray(_faststart_bytes(tmp_path))
    at = len(data) * 3 // 10
    data[at : at + 3000] = np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    path = tmp_path / "damaged.mp4"
    path.write_bytes(bytes(data))
    (row,) = decode(str(path))
    assert row.status == DECODE_ERROR and "decode error inside the segment" in row.error
    assert not row.error.startswith(TRUNCATED_WARNING)


# ---- sidecar limits (item 6)


def _srt(n: int) -> str:
    return "".join(
        f"{i + 1}\n00:00:{i // 1000 % 60:02d},{i % 1000:03d} --> 00:00:{i // 1000 % 60:02d},{i % 1000:03d}\nw{i}\n\n"
        for i in range(n)
    )


def test_sidecar_over_the_cue_limit_is_a_clear_failure(tmp_path):
    path = tmp_path / "clip.srt"
    path.write_text(_srt(10_001))
    with pytest.raises(MediaError) as info:
        read_sidecar(str(path))
    assert info.value.kind == BAD_SIDECAR
    assert "10001 cues, over the limit of 10000" in info.value.message
    path.write_text(_srt(10_000))
    assert len(read_sidecar(str(path))) == 10_000
    assert len(read_sidecar(str(path), LocalFileSystem(), max_cues=10_000)) == 10_000


def test_sidecar_over_the_size_limit_is_not_read(tmp_path):
    path = tmp_path / "clip.vtt"
    path.write_text("WEBVTT\n\n" + "00:00.000 --> 00:01.000\n" + "x" * 6_000_000 + "\n")
    with pytest.raises(MediaError) as info:
        read_sidecar(str(path))
    assert info.value.kind == BAD_SIDECAR and "5000000-byte limit" in info.value.message
    with pytest.raises(MediaError, match="100-byte limit"):
        read_sidecar(str(path), max_bytes=100)
    small = tmp_path / "small.vtt"
    small.write_text("WEBVTT\n\n00:00.000 --> 00:01.000\nhello\n")
    assert [c.text for c in read_sidecar(str(small), max_bytes=small.stat().st_size)] == ["hello"]


# ---- transient failures are retried (issue 14, item 8): the decoder child killed from outside.


def _killed_once_decode(uri, segments, config, storage_options):
    """The first call (per marker file) dies as the OOM killer kills; later calls decode."""
    marker = uri + ".killed"
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return decode(uri, segments, config, storage_options)


def test_a_killed_decoder_is_retried_then_recorded(tmp_path):
    clip = _clip(tmp_path)
    rows = isolate.decode_retrying(clip, [(0.0, 0.5)], DecodeConfig(), None, 30, retries=1, backoff_s=0.01,
                                   decode_fn=_killed_once_decode)
    assert [r.status for r in rows] == [OK] and len(rows[0].frames) > 0
    os.remove(clip + ".killed")
    rows = isolate.decode_retrying(clip, [(0.0, 0.5)], DecodeConfig(), None, 30, retries=0, backoff_s=0.01,
                                   decode_fn=_killed_once_decode)
    assert [r.status for r in rows] == [CRASHED] and "SIGKILL" in rows[0].error


def test_transient_kinds_are_the_ones_a_retry_can_fix():
    assert isolate.is_transient(CRASHED, "decoder process died (killed by SIGKILL)")
    assert isolate.is_transient(UNREADABLE, "cannot read s3://b/v.mp4: EndpointConnectionError: ...")
    assert not isolate.is_transient(UNREADABLE, "cannot open /x/v.mp4: FileNotFoundError: no such file")
    assert not isolate.is_transient(TIMEOUT, "decoding took more than 600 s")
    assert not isolate.is_transient(INVALID_CONTAINER, "not a media container")
