"""Write small mp4 clips (H.264 + AAC) with PyAV.

Used by the tests and by the demo-corpus generator to make media whose content is known exactly:
frame count and size, constant or variable frame rate, rotation metadata, audio tones.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Sequence
from fractions import Fraction
from typing import BinaryIO

import av
import fsspec
import numpy as np

# AAC encodes 1024 samples per frame; feeding the same size avoids a resampling FIFO.
_AUDIO_CHUNK = 1024
# /proc/cpuinfo flag -> the x264 CPU capability names it implies.
_X264_CPU_NAMES = {
    "cmov": "CMOV",
    "sse": "MMX2,SSE",
    "sse2": "SSE2,SSE2Fast",
    "pni": "SSE3",
    "ssse3": "SSSE3",
    "sse4_1": "SSE4.1",
    "sse4_2": "SSE4.2",
    "avx": "AVX",
    "fma": "FMA3",
    "bmi1": "BMI1",
    "bmi2": "BMI2",
    "avx2": "AVX2",
    "abm": "LZCNT",
}


def write_clip(
    path_or_file: str | os.PathLike | BinaryIO,
    frames: np.ndarray | None,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    *,
    video_codec: str = "libx264",
    audio_codec: str = "aac",
    rotation: int | None = None,
    pts_ms: Sequence[int] | None = None,
    faststart: bool = False,
) -> None:
    """Write an mp4 with an H.264 (yuv420p) video stream and/or an AAC audio stream.

    The same arguments give the same bytes, run after run (one x264 thread, no AVX-512 code), so
    generated corpora and test media are reproducible.

    Args:
        path_or_file: a local path, an fsspec URI (``memory://x.mp4``, ``s3://...``), or a
            writable, seekable binary file object.
        frames: uint8 array (T, H, W, 3) of RGB frames, H and W even; ``None`` writes an
            audio-only file.
        fps: the frame rate of a constant-rate clip (also the nominal rate when ``pts_ms`` is given).
        audio: float32 samples in [-1, 1], shape (samples,) for mono or (channels, samples);
            ``None`` writes a video-only file.
        sample_rate: the audio sample rate in Hz.
        video_codec: an FFmpeg video encoder name.
        audio_codec: an FFmpeg audio encoder name.
        rotation: 0/90/180/270: written as the stream's display matrix. It is the angle, counter-
            clockwise, by which a player turns the stored picture to show it (FFmpeg's convention,
            read back by PyAV as ``VideoFrame.rotation`` and by :func:`fv2es.media.decode.probe`).
        pts_ms: presentation time of each frame in milliseconds (strictly increasing) to write a
            variable-frame-rate clip; ``None`` gives frame ``i`` the time ``i / fps``.
        faststart: put the index (``moov``) before the media data, as streaming-friendly files do.
            A truncated faststart file still decodes up to the cut; a truncated default file has
            lost its index entirely.

    Raises:
        ValueError: when both ``frames`` and ``audio`` are ``None`` or the arrays are malformed.
    """
    if frames is None and audio is None:
        raise ValueError("write_clip needs frames, audio, or both")
    if frames is not None:
        frames = _check_frames(frames, pts_ms)
    if audio is not None:
        audio = _check_audio(audio)
    if rotation is not None and rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90, got {rotation}")

    args = (frames, fps, audio, sample_rate, video_codec, audio_codec, rotation, pts_ms, faststart)
    local = isinstance(path_or_file, (str, os.PathLike)) and "://" not in str(path_or_file)
    if isinstance(path_or_file, str) and path_or_file.startswith("file://"):
        path_or_file, local = path_or_file[len("file://") :], True
    if local:
        _write(os.fspath(path_or_file), *args)
        return
    if faststart or isinstance(path_or_file, str):
        # The faststart pass reopens the output by name, and object-store files cannot seek
        # back to patch box sizes: build the file locally and copy it out in one write.
        with tempfile.TemporaryDirectory() as tmp:
            tmp_path = os.path.join(tmp, "clip.mp4")
            _write(tmp_path, *args)
            with open(tmp_path, "rb") as src:
                data = src.read()
        if isinstance(path_or_file, str):
            with fsspec.open(path_or_file, "wb") as f:
                f.write(data)
        else:
            path_or_file.write(data)
        return
    _write(path_or_file, *args)


def _check_frames(frames: np.ndarray, pts_ms: Sequence[int] | None) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}")
    if frames.shape[1] % 2 or frames.shape[2] % 2:
        raise ValueError(f"yuv420p needs an even width and height, got {frames.shape[2]}x{frames.shape[1]}")
    if pts_ms is not None:
        if len(pts_ms) != len(frames):
            raise ValueError(f"pts_ms has {len(pts_ms)} entries for {len(frames)} frames")
        if any(b <= a for a, b in zip(pts_ms, pts_ms[1:])):
            raise ValueError("pts_ms must be strictly increasing")
    return frames


def _check_audio(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float32)
    if audio.ndim == 1:
        audio = audio[None, :]
    if audio.ndim != 2 or audio.shape[0] not in (1, 2) or audio.shape[1] == 0:
        raise ValueError(f"audio must be (samples,) or (1|2, samples), got {audio.shape}")
    return np.ascontiguousarray(audio)


def _write(target, frames, fps, audio, sample_rate, video_codec, audio_codec, rotation, pts_ms, faststart):
    options = {"movflags": "faststart"} if faststart else {}
    # A file object carries no extension to guess the format from.
    with av.open(target, "w", format="mp4", options=options) as container:
        vstream = astream = None
        if frames is not None:
            rate = Fraction(fps).limit_denominator(100000)
            options = {"x264-params": _x264_params()} if video_codec == "libx264" and _x264_params() else {}
            vstream = container.add_stream(video_codec, rate=rate, options=options)
            vstream.width, vstream.height = frames.shape[2], frames.shape[1]
            # x264's frame threads make the output depend on scheduling; one thread makes the
            # same frames give the same bytes (the demo corpus and tests rely on that).
            vstream.codec_context.thread_count = 1
            # FFmpeg's MJPEG encoder wants full-range ("j") YUV unless told to relax.
            vstream.pix_fmt = "yuvj420p" if video_codec == "mjpeg" else "yuv420p"
            # Millisecond ticks make any pts_ms exact; a constant-rate clip ticks once per frame.
            vstream.codec_context.time_base = Fraction(1, 1000) if pts_ms is not None else 1 / rate
            if pts_ms is not None and video_codec == "libx264":
                # With B-frames x264 derives decode times from earlier frames' presentation
                # times; across uneven gaps that makes mp4 track durations wrong.
                vstream.codec_context.max_b_frames = 0
            if rotation:
                vstream.set_display_rotation(rotation)
        if audio is not None:
            astream = container.add_stream(audio_codec, rate=sample_rate)
            astream.layout = "mono" if audio.shape[0] == 1 else "stereo"

        video_times = _frame_times(frames, fps, pts_ms) if frames is not None else []
        audio_pos = 0
        for i, t in enumerate(video_times):
            # Interleave: emit the audio that plays before this frame, so a truncated file
            # loses both streams at about the same time, like a real recording.
            if astream is not None:
                audio_pos = _encode_audio(container, astream, audio, sample_rate, audio_pos, t)
            frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
            frame.pts = int(pts_ms[i]) if pts_ms is not None else i
            frame.time_base = vstream.codec_context.time_base
            container.mux(vstream.encode(frame))
        if astream is not None:
            _encode_audio(container, astream, audio, sample_rate, audio_pos, float("inf"))
            container.mux(astream.encode(None))
        if vstream is not None:
            container.mux(vstream.encode(None))


@functools.cache
def _x264_params() -> str:
    """x264 options for run-to-run identical output ("" = x264's defaults).

    x264's AVX-512 code paths give different bytes for the same frames from run to run (seen
    with FFmpeg 8 / x264 core 165 on AMD EPYC). On a CPU with AVX-512 we name every capability
    the CPU reports except AVX-512, so x264 uses its AVX2 code; elsewhere x264 chooses itself.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return ""
    if "avx512f" not in flags:
        return ""
    return "asm=" + ",".join(_X264_CPU_NAMES[flag] for flag in _X264_CPU_NAMES if flag in flags)


def _frame_times(frames: np.ndarray, fps: float, pts_ms: Sequence[int] | None) -> list[float]:
    if pts_ms is not None:
        return [p / 1000.0 for p in pts_ms]
    return [i / fps for i in range(len(frames))]


def _encode_audio(container, astream, audio, sample_rate, pos, until_s) -> int:
    """Encode audio chunks starting at sample ``pos`` that begin before ``until_s``; return the new pos."""
    layout = "mono" if audio.shape[0] == 1 else "stereo"
    n = audio.shape[1]
    while pos < n and pos / sample_rate < until_s:
        chunk = audio[:, pos : pos + _AUDIO_CHUNK]
        # fltp is planar: one row per channel, exactly the (channels, samples) layout we hold.
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(chunk), format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = pos
        frame.time_base = Fraction(1, sample_rate)
        container.mux(astream.encode(frame))
        pos += chunk.shape[1]
    return pos
