"""The one decoder interface: PyAV over an fsspec file object, one pass per video.

``decode`` samples frames by presentation timestamp (correct for variable frame rate), scales
them to a bounded size, turns them upright by the rotation metadata, resamples the audio to
16 kHz mono (or one chosen channel), and slices both per segment. A bad input is a value: every
returned row carries ``status`` (``ok`` or a kind from :mod:`fv2es.failures`) and ``error``.

Sampling: for a segment, the instants are ``start + k * interval``; the first frame whose
presentation time is at or after an instant is kept, once (a slow clip's frame that covers
several instants is not repeated). Times are media times from the container's start. Audio is
placed on that timeline by its first frame's timestamp; gaps inside an audio stream are not
filled. A segment ending past the media is clipped to it (the row keeps the requested ``end_s``).

Truncated or corrupt streams: whatever decoded before the damage is kept. A segment that lies
wholly before the damage is ``ok``. A *truncated* file (the data runs out while the container
declares more, e.g. an upload cut short with its index at the front) is scored on what decoded:
a segment that got some frames or audio before the cut stays ``ok`` with ``error`` set to
``warning: truncated: ...`` (``ok`` is what the model stage scores), and one wholly past the cut
is ``decode_error``. Errors at the point where a stream's data ran out are the cut itself; an
error *inside* the data (corrupt packets), or a read that failed, makes the segments it touches
``decode_error``, still carrying the partial frames and audio they got.

What a hostile file cannot make FFmpeg do (open URLs or other files, block on a FIFO) is
:mod:`fv2es.media.guard`'s part; error messages name URIs without their secrets
(:func:`fv2es.storage.redact_uri`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import av
import numpy as np
from fsspec.core import split_protocol, url_to_fs
from fsspec.implementations.local import LocalFileSystem

from fv2es.data.transcripts import SIDECAR_MAX_BYTES, SIDECAR_MAX_CUES
from fv2es.failures import (
    BAD_SEGMENT,
    DECODE_ERROR,
    INVALID_CONTAINER,
    NO_STREAMS,
    OK,
    TOO_LARGE,
    UNREADABLE,
    UNSUPPORTED_CONTAINER,
    MediaError,
)
from fv2es.media import guard
from fv2es.media.sinks import (
    TRUNCATED_WARNING,  # noqa: F401 -- re-exported: callers of decode() test rows for it
    AudioSink,
    SegmentFrames,
    VideoSink,
    limit_pixels,
    norm_rotation,
    segment_status,
)
from fv2es.storage import redact_text, redact_uri

# Skip ahead with a seek when the first segment starts this late (IEMOCAP-style long dialogs).
_SEEK_THRESHOLD_S = 10.0
# Enough of a file's start to recognise the playlists and lists guard refuses.
_HEAD_BYTES = 4096


@dataclass(frozen=True)
class DecodeConfig:
    """How to decode: sampling, size and safety limits."""

    img_interval_ms: int = 500  # keep one frame per this many ms, chosen by presentation time
    max_side: int = 640  # scale kept frames so the longer side is at most this (aspect kept)
    max_declared_pixels: int = 8192 * 8192  # refuse streams declaring more (TOO_LARGE), before decoding
    sample_rate: int = 16000  # output audio rate, Hz
    audio_channel: int | None = None  # None: mix to mono; 0/1: take that channel (IEMOCAP stereo)
    max_duration_s: float = 4 * 3600  # refuse media declaring a longer duration (TOO_LARGE)
    threads: int = 1  # decoder threads per video; 0 = FFmpeg's choice. Ray runs one decode per CPU
    # H.264 / HEVC: skip the frames no other frame refers to (most B-frames): ~40% less decoding
    # CPU on B-frame video (BENCHMARKS.md), but a sampled instant then takes the next *decoded*
    # frame, a frame period or two later than the rule above. Video without B-frames (most phone
    # recordings) decodes as before. Off by default: the sampling rule holds exactly.
    skip_nonref: bool = False
    # How much lower the decoder process's CPU priority is than its caller's (Unix niceness,
    # 0-19): on a machine where decoding shares the cores with the model, a positive value lets
    # the model (the bottleneck) have the CPU whenever it can use it; decoding takes the rest.
    nice: int = 0
    probe_timeout_s: float = 60.0  # limit for reading one file's header (probe); a stuck input fails sooner
    io_timeout_s: float = 30.0  # connect / read timeout of remote file objects (s3, http), per request
    sidecar_max_bytes: int = SIDECAR_MAX_BYTES  # a larger transcript sidecar is bad_sidecar, not read
    sidecar_max_cues: int = SIDECAR_MAX_CUES  # a sidecar with more cues is bad_sidecar (each cue may be a segment)

    def __post_init__(self):
        if self.img_interval_ms <= 0 or self.max_side <= 0 or self.sample_rate <= 0:
            raise ValueError(f"img_interval_ms, max_side and sample_rate must be positive: {self}")
        if min(self.probe_timeout_s, self.io_timeout_s, self.sidecar_max_bytes, self.sidecar_max_cues) <= 0:
            raise ValueError(
                f"probe_timeout_s, io_timeout_s, sidecar_max_bytes and sidecar_max_cues must be positive: {self}"
            )
        if not 0 <= self.nice <= 19:
            raise ValueError(f"nice must be 0-19, got {self.nice}")
        if self.audio_channel is not None and self.audio_channel < 0:
            raise ValueError(f"audio_channel must be None or >= 0, got {self.audio_channel}")


@dataclass
class MediaInfo:
    """What a container declares, plus the rotation read from its first video frame."""

    duration_s: float | None  # container duration; None when it declares none
    fps: float | None  # average frame rate (nominal for variable-rate video)
    width: int  # display width, after rotation; 0 without video
    height: int  # display height, after rotation; 0 without video
    rotation: int  # 0/90/180/270: counter-clockwise turn applied to show the stored picture
    video_codec: str | None
    audio_codec: str | None
    has_video: bool
    has_audio: bool
    audio_sample_rate: int | None
    audio_channels: int | None


@dataclass
class Decoded:
    """One segment of one video: sampled frames and audio, or a failure status."""

    start_s: float  # requested segment start (media time, seconds)
    end_s: float  # requested segment end; the whole-file row uses the media duration
    frames: np.ndarray  # uint8 (N, H, W, 3) RGB, upright, longer side <= max_side; N may be 0
    frame_times_s: np.ndarray  # float64 (N,) presentation time of each frame, from media start
    audio: np.ndarray  # float32 (samples,) mono at config.sample_rate; may be empty
    has_video: bool  # the file has a usable video stream
    has_audio: bool  # the file has a usable audio stream
    status: str = OK  # "ok" or a failure kind from fv2es.failures
    error: str = ""  # human-readable reason when status is not ok


def failed_rows(segments: Sequence[tuple[float, float]] | None, kind: str, message: str) -> list[Decoded]:
    """Rows with status ``kind`` and no data for each segment (one row, end NaN, for the whole file)."""
    spans = list(segments) if segments is not None else [(0.0, math.nan)]
    return [
        Decoded(
            float(s),
            float(e),
            _no_frames(0, 0),
            np.zeros(0),
            np.zeros(0, np.float32),
            False,
            False,
            kind,
            message,
        )
        for s, e in spans
    ]


def probe(uri: str, storage_options: dict | None = None, config: DecodeConfig | None = None) -> MediaInfo:
    """Read a media file's declared properties (decodes at most its first video frame).

    Raises:
        MediaError: UNREADABLE, INVALID_CONTAINER, UNSUPPORTED_CONTAINER or NO_STREAMS; ``probe``
            is a question about one file, so unlike :func:`decode` it reports a bad input by raising.
    """
    with _open(uri, storage_options, config or DecodeConfig()) as container:
        vs, as_ = _pick_streams(container)
        # Read the declared size first: a refused first frame leaves the decoder at 0x0.
        width, height = (vs.codec_context.width, vs.codec_context.height) if vs is not None else (0, 0)
        rotation = _first_rotation(container, vs, config or DecodeConfig()) if vs is not None else 0
        if rotation in (90, 270):
            width, height = height, width
        rate = (vs.average_rate or vs.guessed_rate) if vs is not None else None
        return MediaInfo(
            duration_s=_declared_duration(container),
            fps=float(rate) if rate else None,
            width=width,
            height=height,
            rotation=rotation,
            video_codec=vs.codec_context.name if vs is not None else None,
            audio_codec=as_.codec_context.name if as_ is not None else None,
            has_video=vs is not None,
            has_audio=as_ is not None,
            audio_sample_rate=as_.sample_rate if as_ is not None else None,
            audio_channels=as_.channels if as_ is not None else None,
        )


def decode(
    uri: str,
    segments: Sequence[tuple[float, float]] | None = None,
    config: DecodeConfig = DecodeConfig(),  # noqa: B008 -- frozen, so a shared default is safe
    storage_options: dict | None = None,
) -> list[Decoded]:
    """Decode a video once and return one :class:`Decoded` per segment (in the given order).

    Args:
        uri: any fsspec URI or local path; the file object is streamed to FFmpeg, never copied.
        segments: ``(start_s, end_s)`` pairs in media time, or ``None`` for the whole file.
        config: sampling, size and safety settings.
        storage_options: passed to ``fsspec.open`` (credentials, endpoint, ...).

    Never raises for a bad input: such rows carry a failure ``status`` and an ``error`` message.
    A segment outside the media gets ``bad_segment`` on its own row; the others still decode.
    """
    try:
        with _open(uri, storage_options, config) as container:
            return _decode_container(container, segments, config)
    except MediaError as e:
        return failed_rows(segments, e.kind, e.message)
    except Exception as e:  # noqa: BLE001 -- a decoder may raise anything on hostile input
        return failed_rows(segments, DECODE_ERROR, redact_text(f"{type(e).__name__}: {e}", uri))


@contextmanager
def _open(uri: str, storage_options: dict | None, config: DecodeConfig):
    shown = redact_uri(uri)
    f = _open_file(uri, storage_options, config, shown)
    try:
        try:
            head = f.read(_HEAD_BYTES)
            f.seek(0)
        except Exception as e:  # noqa: BLE001
            raise MediaError(UNREADABLE, redact_text(f"cannot read {shown}: {type(e).__name__}: {e}", uri)) from e
        if not head:
            raise MediaError(INVALID_CONTAINER, f"{shown} is a zero-byte file")
        what = guard.refused_kind(head)
        if what is not None:
            raise MediaError(UNSUPPORTED_CONTAINER, f"{shown} is {what}; only self-contained media files are decoded")
        try:
            # max_pixels also reaches the decoders FFmpeg runs while probing the streams, so a
            # hostile frame size is refused there too rather than allocated.
            container = av.open(
                f,
                "r",
                options={"max_pixels": str(config.max_declared_pixels)},
                container_options=guard.container_options(),
            )
        except av.ArgumentError as e:
            # EINVAL from opening: the probed demuxer is off the whitelist, or it tried to open
            # another file or URL (refused by the protocol whitelist).
            raise MediaError(
                UNSUPPORTED_CONTAINER,
                f"{shown} is a container FFmpeg would read other files or URLs for; only "
                "self-contained media files are decoded",
            ) from e
        except av.FFmpegError as e:
            raise MediaError(
                INVALID_CONTAINER, redact_text(f"{shown} is not a media container FFmpeg can read: {e}", uri)
            ) from e
        except Exception as e:  # noqa: BLE001 -- errors raised by the file object itself
            raise MediaError(UNREADABLE, redact_text(f"cannot read {shown}: {type(e).__name__}: {e}", uri)) from e
        try:
            yield container
        finally:
            container.close()
    finally:
        f.close()


def _open_file(uri: str, storage_options: dict | None, config: DecodeConfig, shown: str):
    """The input's file object: local paths opened by :func:`guard.open_local`, others by fsspec."""
    try:
        options = guard.with_io_timeouts(split_protocol(uri)[0] or "file", storage_options or {}, config.io_timeout_s)
        fs, path = url_to_fs(uri, **options)
        if isinstance(fs, LocalFileSystem):
            return guard.open_local(path)
        return fs.open(path, "rb")
    except Exception as e:  # noqa: BLE001 -- missing file, bad protocol, denied, unreachable, a FIFO
        raise MediaError(UNREADABLE, redact_text(f"cannot open {shown}: {type(e).__name__}: {e}", uri)) from e


def _pick_streams(container):
    """The first real video stream (cover art is not video) and the first audio stream."""
    video = [
        s
        for s in container.streams.video
        if not s.disposition & av.stream.Disposition.attached_pic and s.codec_context is not None
    ]
    audio = [s for s in container.streams.audio if s.codec_context is not None]
    if not video and not audio:
        raise MediaError(NO_STREAMS, "no video or audio stream")
    return (video[0] if video else None), (audio[0] if audio else None)


def _declared_duration(container) -> float | None:
    if container.duration is not None and container.duration > 0:
        return container.duration / av.time_base
    return None


def _first_rotation(container, vs, config: DecodeConfig) -> int:
    """Rotation lives in the stream's display matrix; PyAV exposes it on decoded frames."""
    limit_pixels(vs, config.max_declared_pixels)
    try:
        for frame in container.decode(vs):
            return norm_rotation(frame.rotation)
    except av.FFmpegError:
        pass
    return 0


def _no_frames(height: int, width: int) -> np.ndarray:
    return np.zeros((0, height, width, 3), np.uint8)


def _check_limits(container, vs, config: DecodeConfig) -> None:
    if vs is not None:
        w, h = vs.codec_context.width, vs.codec_context.height
        if w * h > config.max_declared_pixels:
            raise MediaError(
                TOO_LARGE, f"declared frame size {w}x{h} exceeds {config.max_declared_pixels} pixels"
            )
    duration = _declared_duration(container)
    if duration is not None and duration > config.max_duration_s:
        raise MediaError(
            TOO_LARGE, f"declared duration {duration:.0f} s exceeds {config.max_duration_s:.0f} s"
        )


def _decode_container(container, segments, config: DecodeConfig) -> list[Decoded]:
    vs, as_ = _pick_streams(container)
    _check_limits(container, vs, config)
    duration = _declared_duration(container)
    interval = config.img_interval_ms / 1000.0

    whole = segments is None
    spans = [(0.0, duration if duration is not None else config.max_duration_s)] if whole else list(segments)
    segs = [SegmentFrames(float(s), float(e), interval) for s, e in spans]
    for seg in segs:
        seg.error = _segment_problem(seg.start, seg.end, duration)
    live = [s for s in segs if not s.error]

    video = VideoSink(vs, config.max_side, config.max_declared_pixels, config.threads, config.skip_nonref) if vs is not None else None
    audio = AudioSink(as_, config.sample_rate, config.audio_channel) if as_ is not None else None
    sinks = [s for s in (video, audio) if s is not None]
    errors: list[tuple[float, str, str]] = []  # (media time, message, stream kind) of decode errors
    if live:
        _run(container, sinks, live, config, errors)

    rows = []
    for seg in segs:
        end = seg.end
        if whole:
            end = duration if duration is not None else max(s.end for s in sinks)
        sound = audio.slice(seg.start, seg.end) if audio and not seg.error else np.zeros(0, np.float32)
        status, error = (
            (BAD_SEGMENT, seg.error)
            if seg.error
            else segment_status(seg, duration, sinks, errors, bool(seg.frames) or len(sound) > 0)
        )
        rows.append(
            Decoded(
                start_s=seg.start,
                end_s=end,
                frames=np.stack(seg.frames) if seg.frames else _no_frames(*(video.shape if video else (0, 0))),
                frame_times_s=np.asarray(seg.times, dtype=np.float64),
                audio=sound,
                has_video=vs is not None,
                has_audio=as_ is not None,
                status=status,
                error=error,
            )
        )
    return rows


def _segment_problem(start: float, end: float, duration: float | None) -> str:
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
        return f"segment ({start}, {end}) is not a non-empty span of non-negative times"
    if duration is not None and start >= duration:
        return f"segment ({start}, {end}) starts at or after the media end ({duration:.3f} s)"
    return ""


def _run(container, streams, segs, config, errors) -> None:
    """Demux and decode both streams in one pass, feeding kept frames and audio to the sinks."""
    origin = container.start_time / av.time_base if container.start_time is not None else 0.0
    first = min(s.start for s in segs)
    last = min(max(s.end for s in segs), config.max_duration_s)
    if first > _SEEK_THRESHOLD_S:
        try:
            # Backward seek lands on a keyframe at or before the target; frames before the
            # segment are decoded (needed as references) but not kept.
            container.seek(int((origin + first - 1.0) * av.time_base))
        except av.FFmpegError:
            container.seek(0)
    sinks = {s.stream.index: s for s in streams}
    for s in sinks.values():
        s.origin = origin
    try:
        for packet in container.demux([s.stream for s in sinks.values()]):
            sink = sinks[packet.stream.index]
            if sink.done:
                continue
            try:
                frames = packet.decode()
            except av.FFmpegError as e:
                errors.append((sink.end, f"{sink.kind}: {e}", sink.kind))
                if len(errors) > 1000:  # garbage all the way: stop spending time on it
                    raise
                continue
            for frame in frames:
                sink.add(frame, segs, last)
            if all(s.done for s in sinks.values()):
                return
    except av.FFmpegError as e:  # reading failed, or too many errors: keep what we have
        for s in sinks.values():
            s.aborted = True
            errors.append((s.end, f"reading the container failed: {e}", s.kind))
