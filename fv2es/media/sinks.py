"""The per-stream state of one decoding pass: which frames each segment keeps, the sinks that
receive decoded video frames (scaled, turned upright) and audio (resampled, one channel), and
how their outcome becomes a segment's status (ok, ok but truncated, decode_error).

Split from :mod:`fv2es.media.decode`, which owns the pass itself and the rows it returns.
"""

from __future__ import annotations

import math

import av
import numpy as np

from fv2es.failures import BAD_SEGMENT, DECODE_ERROR, OK

# Float timestamps: a frame at exactly a sampling instant must count as "at or after" it.
EPS = 1e-6
# Decode errors this close to where a truncated stream's data ends are the cut itself.
_CUT_S = 1.0
# The prefix of ``error`` on a scored row whose file was truncated (its status stays ok).
TRUNCATED_WARNING = "warning: truncated: "


def limit_pixels(stream, max_pixels: int) -> None:
    """Make FFmpeg refuse frames beyond ``max_pixels``, also when a stream changes size midway."""
    stream.codec_context.options = {**stream.codec_context.options, "max_pixels": str(max_pixels)}


def norm_rotation(degrees: float) -> int:
    """A display-matrix angle as 0, 90, 180 or 270."""
    return int(round(degrees / 90.0)) % 4 * 90


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """``(width, height)`` scaled so the longer side is at most ``max_side``, aspect kept."""
    scale = min(1.0, max_side / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


class SegmentFrames:
    """Per-segment sampling state: the next sampling instant and the frames kept so far.

    For a segment, the instants are ``start + k * interval``; the first frame whose presentation
    time is at or after an instant is kept, once.
    """

    def __init__(self, start: float, end: float, interval: float):
        self.start, self.end, self.interval = start, end, interval
        self.next_t = start
        self.frames: list[np.ndarray] = []
        self.times: list[float] = []
        self.error = ""

    def wants(self, t: float) -> bool:
        """Whether a frame at media time ``t`` is the next one this segment samples."""
        return self.start - EPS <= t < self.end and t >= self.next_t - EPS

    def keep(self, t: float, image: np.ndarray) -> None:
        """Keep ``image`` (presented at ``t``) and move on to the next sampling instant."""
        self.frames.append(image)
        self.times.append(t)
        # The next instant after this frame: one slow frame may cover several instants, and it
        # is kept once (the first frame at or after each instant is this same frame).
        self.next_t = self.start + (math.floor((t - self.start) / self.interval + EPS) + 1) * self.interval


class Sink:
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


# Decoders whose skipping of non-reference frames is known to keep every reference frame (FFmpeg's
# AVDISCARD_NONREF); other codecs decode every frame.
NONREF_CODECS = frozenset({"h264", "hevc"})


class VideoSink(Sink):
    """Keeps the sampled frames: scaled to the target size, converted to RGB, turned upright."""

    kind = "video"

    def __init__(self, stream, max_side: int, max_pixels: int, threads: int, skip_nonref: bool = False):
        super().__init__(stream)
        stream.codec_context.thread_count = threads
        stream.codec_context.thread_type = "AUTO"
        if skip_nonref and stream.codec_context.name in NONREF_CODECS:
            stream.codec_context.skip_frame = "NONREF"
        limit_pixels(stream, max_pixels)
        self.size = target_size(stream.codec_context.width, stream.codec_context.height, max_side)
        self.shape = (self.size[1], self.size[0])  # (H, W) of kept frames, for empty rows too
        rate = stream.average_rate or stream.guessed_rate
        self.step = 1.0 / float(rate) if rate else 1.0 / 30

    def add(self, frame, segs, last: float) -> None:
        """Take one decoded frame: convert it once if any segment samples it; stop past ``last``."""
        t = self._time(frame)
        turns = norm_rotation(frame.rotation) // 90
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


class AudioSink(Sink):
    """Resamples to the output rate, keeps one channel or the mean of all, then slices by time."""

    kind = "audio"

    def __init__(self, stream, sample_rate: int, channel: int | None):
        super().__init__(stream)
        self.rate = sample_rate
        self.channel = channel
        # Keep the source layout: channel choice and mixing happen here, explicitly, rather
        # than by FFmpeg's downmix matrix (which weights and may clip channels).
        self.resampler = av.AudioResampler(format="fltp", rate=self.rate)
        self.chunks: list[np.ndarray] = []
        self.data: np.ndarray | None = None  # all kept samples, once decoding is over
        self.t0: float | None = None  # media time of the first sample

    def add(self, frame, segs, last: float) -> None:
        """Take one decoded audio frame: resample it and keep the chosen channel (or the mix)."""
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
        """The kept samples for media times ``[start, end)``, once decoding is over."""
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


def _declared_end(sink, duration: float) -> tuple[float, float]:
    """Where a stream should end, and the slack a comparison with it needs.

    A stream's own declared length is exact up to a frame or two; the container's is the
    longest stream's, so comparing against it needs more slack.
    """
    return (sink.declared_end, 2 * sink.step + 0.05) if sink.declared_end else (duration, 1.0)


def _cut_short(sink, duration: float | None) -> bool:
    """The stream's data ran out (no read error) well before the container said it would."""
    if duration is None or sink.done or sink.aborted:
        return False
    declared, slack = _declared_end(sink, duration)
    return declared > sink.end + slack


def segment_status(seg: SegmentFrames, duration, sinks, errors, has_data: bool) -> tuple[str, str]:
    """A segment's ``(status, error)`` from how each stream's decoding went and the errors seen."""
    cut = {s.kind: s for s in sinks if _cut_short(s, duration)}
    # An error where a truncated stream's data ran out (a half-written last packet) is the cut
    # itself, not damage inside the data.
    hit = [
        msg
        for t, msg, kind in errors
        if seg.start - EPS <= t < seg.end and not (kind in cut and t >= cut[kind].end - _CUT_S)
    ]
    if hit:
        return DECODE_ERROR, f"decode error inside the segment: {hit[0]}" + (
            f" (+{len(hit) - 1} more)" if len(hit) > 1 else ""
        )
    data_end = max(s.end for s in sinks)
    if duration is None:
        # Nothing declared to compare with: the decoded data is the media.
        if seg.start >= data_end:
            return BAD_SEGMENT, f"segment starts at or after the media end ({data_end:.3f} s)"
        return OK, ""
    for sink in sinks:
        if sink.done:
            continue
        declared, slack = _declared_end(sink, duration)
        # After an abort (a failed read), whatever was wanted past the decoded data is missing.
        if sink.aborted and seg.end > sink.end + slack:
            return (
                DECODE_ERROR,
                f"{sink.kind} decoding stopped at {sink.end:.3f} s after errors; partial data kept",
            )
        if min(seg.end, declared) > sink.end + slack:
            message = f"{sink.kind} data ends at {sink.end:.3f} s but the container declares {declared:.3f} s"
            if has_data:  # a truncated file: score what decoded, and say so
                return OK, f"{TRUNCATED_WARNING}{message}; scored what decoded"
            return DECODE_ERROR, f"{message} (truncated or corrupt file); nothing decoded in this segment"
    return OK, ""
