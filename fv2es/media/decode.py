"""The one decoder interface: PyAV over an fsspec file object, one pass per video.

``decode`` samples frames by presentation timestamp (correct for variable frame rate), scales
them to a bounded size, turns them upright by the rotation metadata, resamples the audio to
16 kHz mono (or one chosen channel), and slices both per segment. A bad input is a value: every
returned row carries ``status`` (``ok`` or a kind from :mod:`fv2es.media.failures`) and ``error``.

Sampling: for a segment, the instants are ``start + k * interval``; the first frame whose
presentation time is at or after an instant is kept, once (a slow clip's frame that covers
several instants is not repeated). Times are media times from the container's start. Audio is
placed on that timeline by its first frame's timestamp; gaps inside an audio stream are not
filled. A segment ending past the media is clipped to it (the row keeps the requested ``end_s``).

Truncated or corrupt streams: whatever decoded before the damage is kept. A segment that lies
wholly before the damage is ``ok``; a segment that overlaps a decode error, or extends past the
point where the data ran out while the container declared more, is ``decode_error`` and still
carries the partial frames and audio it got, so a caller may use them knowingly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import av
import fsspec
import numpy as np

from fv2es.media.failures import (
    BAD_SEGMENT,
    DECODE_ERROR,
    INVALID_CONTAINER,
    NO_STREAMS,
    OK,
    TOO_LARGE,
    UNREADABLE,
    MediaError,
)

# Skip ahead with a seek when the first segment starts this late (IEMOCAP-style long dialogs).
_SEEK_THRESHOLD_S = 10.0
# Float timestamps: a frame at exactly a sampling instant must count as "at or after" it.
_EPS = 1e-6


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

    def __post_init__(self):
        if self.img_interval_ms <= 0 or self.max_side <= 0 or self.sample_rate <= 0:
            raise ValueError(f"img_interval_ms, max_side and sample_rate must be positive: {self}")
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
    status: str = OK  # "ok" or a failure kind from fv2es.media.failures
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


def probe(uri: str, storage_options: dict | None = None) -> MediaInfo:
    """Read a media file's declared properties (decodes at most its first video frame).

    Raises:
        MediaError: UNREADABLE, INVALID_CONTAINER or NO_STREAMS; ``probe`` is a question about
            one file, so unlike :func:`decode` it reports a bad input by raising.
    """
    with _open(uri, storage_options, DecodeConfig()) as container:
        vs, as_ = _pick_streams(container)
        # Read the declared size first: a refused first frame leaves the decoder at 0x0.
        width, height = (vs.codec_context.width, vs.codec_context.height) if vs is not None else (0, 0)
        rotation = _first_rotation(container, vs) if vs is not None else 0
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
        return failed_rows(segments, DECODE_ERROR, f"{type(e).__name__}: {e}")


@contextmanager
def _open(uri: str, storage_options: dict | None, config: DecodeConfig):
    try:
        f = fsspec.open(uri, "rb", **(storage_options or {})).open()
    except Exception as e:  # noqa: BLE001 -- missing file, bad protocol, denied, unreachable
        raise MediaError(UNREADABLE, f"cannot open {uri}: {type(e).__name__}: {e}") from e
    try:
        try:
            empty = f.read(1) == b""
            f.seek(0)
        except Exception as e:  # noqa: BLE001
            raise MediaError(UNREADABLE, f"cannot read {uri}: {type(e).__name__}: {e}") from e
        if empty:
            raise MediaError(INVALID_CONTAINER, f"{uri} is a zero-byte file")
        try:
            # max_pixels also reaches the decoders FFmpeg runs while probing the streams, so a
            # hostile frame size is refused there too rather than allocated.
            container = av.open(f, "r", options={"max_pixels": str(config.max_declared_pixels)})
        except av.FFmpegError as e:
            raise MediaError(INVALID_CONTAINER, f"{uri} is not a media container FFmpeg can read: {e}") from e
        except Exception as e:  # noqa: BLE001 -- errors raised by the file object itself
            raise MediaError(UNREADABLE, f"cannot read {uri}: {type(e).__name__}: {e}") from e
        try:
            yield container
        finally:
            container.close()
    finally:
        f.close()


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


def _first_rotation(container, vs) -> int:
    """Rotation lives in the stream's display matrix; PyAV exposes it on decoded frames."""
    _limit_pixels(vs, DecodeConfig().max_declared_pixels)
    try:
        for frame in container.decode(vs):
            return _norm_rotation(frame.rotation)
    except av.FFmpegError:
        pass
    return 0


def _limit_pixels(stream, max_pixels: int) -> None:
    # FFmpeg refuses to allocate frames beyond max_pixels, also when a stream changes size midway.
    stream.codec_context.options = {**stream.codec_context.options, "max_pixels": str(max_pixels)}


def _norm_rotation(degrees: float) -> int:
    return int(round(degrees / 90.0)) % 4 * 90


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


def _target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


class _Segment:
    """Per-segment sampling state: the next sampling instant and the frames kept so far."""

    def __init__(self, start: float, end: float, interval: float):
        self.start, self.end, self.interval = start, end, interval
        self.next_t = start
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.error = ""

    def wants(self, t: float) -> bool:
        return self.start - _EPS <= t < self.end and t >= self.next_t - _EPS

    def keep(self, t: float, image: np.ndarray) -> None:
        self.frames.append(image)
        self.times.append(t)
        # The next instant after this frame: one slow frame may cover several instants, and it
        # is kept once (the first frame at or after each instant is this same frame).
        self.next_t = self.start + (math.floor((t - self.start) / self.interval + _EPS) + 1) * self.interval


def _decode_container(container, segments, config: DecodeConfig) -> list[Decoded]:
    vs, as_ = _pick_streams(container)
    _check_limits(container, vs, config)
    duration = _declared_duration(container)
    interval = config.img_interval_ms / 1000.0

    whole = segments is None
    spans = [(0.0, duration if duration is not None else config.max_duration_s)] if whole else list(segments)
    segs = [_Segment(float(s), float(e), interval) for s, e in spans]
    for seg in segs:
        seg.error = _segment_problem(seg.start, seg.end, duration)
    live = [s for s in segs if not s.error]

    video = _VideoSink(vs, config) if vs is not None else None
    audio = _AudioSink(as_, config) if as_ is not None else None
    errors: list[tuple[float, str]] = []  # (media time, message) of decode errors
    if live:
        _run(container, video, audio, live, config, errors)

    rows = []
    for seg in segs:
        end = seg.end
        if whole:
            end = (
                duration
                if duration is not None
                else max(video.end if video else 0.0, audio.end if audio else 0.0)
            )
        status, error = (
            (BAD_SEGMENT, seg.error) if seg.error else _segment_status(seg, duration, video, audio, errors)
        )
        rows.append(
            Decoded(
                start_s=seg.start,
                end_s=end,
                frames=np.stack(seg.frames)
                if seg.frames
                else _no_frames(*(video.shape if video else (0, 0))),
                frame_times_s=np.asarray(seg.times, dtype=np.float64),
                audio=audio.slice(seg.start, seg.end) if audio and not seg.error else np.zeros(0, np.float32),
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


def _segment_status(seg: _Segment, duration, video, audio, errors) -> tuple[str, str]:
    hit = [msg for t, msg in errors if seg.start - _EPS <= t < seg.end]
    if hit:
        return DECODE_ERROR, f"decode error inside the segment: {hit[0]}" + (
            f" (+{len(hit) - 1} more)" if len(hit) > 1 else ""
        )
    data_end = max(s.end for s in (video, audio) if s is not None)
    if duration is None:
        # Nothing declared to compare with: the decoded data is the media.
        if seg.start >= data_end:
            return BAD_SEGMENT, f"segment starts at or after the media end ({data_end:.3f} s)"
        return OK, ""
    for sink in (video, audio):
        if sink is None or sink.done:
            continue
        # A stream's own declared length is exact up to a frame or two; the container's is the
        # longest stream's, so comparing against it needs more slack. After an abort, whatever
        # was wanted past the decoded data is missing.
        declared, slack = (sink.declared_end, 2 * sink.step + 0.05) if sink.declared_end else (duration, 1.0)
        if sink.aborted and seg.end > sink.end + slack:
            return (
                DECODE_ERROR,
                f"{sink.kind} decoding stopped at {sink.end:.3f} s after errors; partial data kept",
            )
        if min(seg.end, declared) > sink.end + slack:
            return DECODE_ERROR, (
                f"{sink.kind} data ends at {sink.end:.3f} s but the container declares {declared:.3f} s "
                "(truncated or corrupt file); partial data kept"
            )
    return OK, ""


def _run(container, video, audio, segs, config, errors) -> None:
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
    sinks = {s.stream.index: s for s in (video, audio) if s is not None}
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
                errors.append((sink.end, f"{sink.kind}: {e}"))
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
            errors.append((s.end, f"reading the container failed: {e}"))


class _Sink:
    """What both streams track: media time decoded so far and how reading ended."""

    kind = ""

    def __init__(self, stream):
        self.stream = stream
        self.declared_end = float(stream.duration * stream.time_base) if stream.duration else None
        self.origin = 0.0  # container start time, subtracted so media time starts at 0
        self.end = 0.0  # media time up to which data was decoded
        self.step = 0.0  # duration of one frame of this stream
        self.done = False  # stopped on purpose: past the last segment
        self.aborted = False  # stopped by errors before the end of the stream

    def _time(self, frame) -> float:
        return frame.time - self.origin if frame.time is not None else self.end


class _VideoSink(_Sink):
    """Keeps the sampled frames: scaled to the target size, converted to RGB, turned upright."""

    kind = "video"

    def __init__(self, stream, config: DecodeConfig):
        super().__init__(stream)
        stream.codec_context.thread_count = config.threads
        stream.codec_context.thread_type = "AUTO"
        _limit_pixels(stream, config.max_declared_pixels)
        self.size = _target_size(stream.codec_context.width, stream.codec_context.height, config.max_side)
        self.shape = (self.size[1], self.size[0])  # (H, W) of kept frames, for empty rows too
        rate = stream.average_rate or stream.guessed_rate
        self.step = 1.0 / float(rate) if rate else 1.0 / 30

    def add(self, frame, segs, last: float) -> None:
        t = self._time(frame)
        turns = _norm_rotation(frame.rotation) // 90
        self.shape = (self.size[0], self.size[1]) if turns % 2 else (self.size[1], self.size[0])
        self.end = max(self.end, t + self.step)
        if t >= last:
            self.done = True
            return
        image = None
        for seg in segs:
            if seg.wants(t):
                if image is None:
                    image = frame.reformat(
                        width=self.size[0], height=self.size[1], format="rgb24"
                    ).to_ndarray()
                    # rot90 turns counter-clockwise, the direction of FFmpeg's display-matrix angle.
                    image = np.ascontiguousarray(np.rot90(image, k=turns)) if turns else image
                seg.keep(t, image)


class _AudioSink(_Sink):
    """Resamples to the output rate, keeps one channel or the mean of all, then slices by time."""

    kind = "audio"

    def __init__(self, stream, config: DecodeConfig):
        super().__init__(stream)
        self.rate = config.sample_rate
        self.channel = config.audio_channel
        # Keep the source layout: channel choice and mixing happen here, explicitly, rather
        # than by FFmpeg's downmix matrix (which weights and may clip channels).
        self.resampler = av.AudioResampler(format="fltp", rate=self.rate)
        self.chunks: list[np.ndarray] = []
        self.data: np.ndarray | None = None  # all kept samples, once decoding is over
        self.t0: float | None = None  # media time of the first sample

    def add(self, frame, segs, last: float) -> None:
        t = self._time(frame)
        if self.t0 is None:
            self.t0 = t
        self.step = frame.samples / frame.sample_rate
        self.end = max(self.end, t + self.step)
        self.done = t >= last
        for out in self.resampler.resample(frame):
            self._keep(out.to_ndarray())

    def _keep(self, planar: np.ndarray) -> None:
        if self.channel is None:
            self.chunks.append(planar.mean(axis=0, dtype=np.float32))
        else:
            # A mono file has one channel for every speaker.
            self.chunks.append(planar[min(self.channel, planar.shape[0] - 1)])

    def slice(self, start: float, end: float) -> np.ndarray:
        if self.data is None:
            for out in self.resampler.resample(None):  # flush the resampler's delay line
                self._keep(out.to_ndarray())
            self.data = (
                np.concatenate(self.chunks).astype(np.float32, copy=False)
                if self.chunks
                else np.zeros(0, np.float32)
            )
            self.chunks = []
        t0 = self.t0 or 0.0
        a, b = round((start - t0) * self.rate), round((end - t0) * self.rate)
        piece = self.data[max(a, 0) : max(b, 0)]
        if a < 0 and b > 0:  # the segment begins before the first audio sample: silence
            piece = np.concatenate([np.zeros(min(-a, b - a), np.float32), piece])
        return piece
