"""Transcript sources: a manifest column, sidecar files beside a video, and the datasets' own formats.

Every source yields :class:`Segment` values (or one text string). Sidecars follow one rule:
a *missing* sidecar means the text modality is absent (``None``), an *unparsable* one is a bad
input and raises :class:`~fv2es.failures.MediaError` with kind ``BAD_SIDECAR``.
"""

from __future__ import annotations

import codecs
import html
import os
import posixpath
import re
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

from fv2es.failures import BAD_SIDECAR, MediaError
from fv2es.storage import redact_text, redact_uri

# Looked for in this order: timed formats first, since they also give segment boundaries.
SIDECAR_SUFFIXES = (".srt", ".vtt", ".txt")
# Limits on one sidecar (the defaults of decode.sidecar_max_bytes / sidecar_max_cues): a
# subtitle file is kilobytes, and each cue may become a segment to decode and score.
SIDECAR_MAX_BYTES = 5_000_000
SIDECAR_MAX_CUES = 10_000


@dataclass(frozen=True)
class Segment:
    """A piece of transcript; ``start``/``end`` in seconds, ``None`` meaning the whole video."""

    start: float | None
    end: float | None
    text: str

    def __iter__(self) -> Iterator[Any]:
        # Lets callers unpack ``start, end, text = segment`` like the tuple it replaces.
        return iter((self.start, self.end, self.text))


def text_for_span(segments: Iterable[Segment], start: float | None = None, end: float | None = None) -> str:
    """Join the text of the segments that overlap ``[start, end)`` (``None`` = unbounded).

    A timed segment belongs to every span it overlaps (a cue that straddles two windows gives
    its words to both: each window is scored on what is said during it); one that merely
    touches the span's edge does not, and a zero-length cue belongs to the span holding it.
    An untimed (whole-video) segment belongs to every span.
    """
    parts = []
    for seg in segments:
        if seg.start is not None and seg.end is not None and not overlaps(seg.start, seg.end, start, end):
            continue
        parts.append(seg.text)
    return " ".join(p for p in parts if p)


def overlaps(seg_start: float, seg_end: float, start: float | None, end: float | None) -> bool:
    """Whether ``[seg_start, seg_end)`` overlaps ``[start, end)`` (``None`` = unbounded); an instant
    (``seg_end <= seg_start``) overlaps the span that holds it."""
    lo = -float("inf") if start is None else start
    hi = float("inf") if end is None else end
    if seg_end <= seg_start:  # an instant: inside [lo, hi)
        return lo <= seg_start < hi
    return seg_start < hi and seg_end > lo


# -- sidecar files -------------------------------------------------------------------------


def find_sidecar(video_uri: str, fs: fsspec.AbstractFileSystem | None = None) -> str | None:
    """URI of ``<stem>.srt``, ``<stem>.vtt`` or ``<stem>.txt`` beside the video (first found), else None."""
    fs = fs if fs is not None else url_to_fs(video_uri)[0]
    stem = posixpath.splitext(video_uri)[0]
    for suffix in SIDECAR_SUFFIXES:
        if fs.exists(stem + suffix):
            return stem + suffix
    return None


def read_sidecar(
    sidecar_uri: str,
    fs: fsspec.AbstractFileSystem | None = None,
    *,
    max_bytes: int = SIDECAR_MAX_BYTES,
    max_cues: int = SIDECAR_MAX_CUES,
) -> list[Segment]:
    """Parse a sidecar transcript by its suffix: ``.srt`` / ``.vtt`` cues, or ``.txt`` as one segment.

    Raises:
        MediaError: kind ``BAD_SIDECAR`` when the file cannot be read or parsed, is larger than
            ``max_bytes``, or holds more than ``max_cues`` cues.
    """
    fs = fs if fs is not None else url_to_fs(sidecar_uri)[0]
    shown = redact_uri(sidecar_uri)
    try:
        data = _read_capped(fs, sidecar_uri, max_bytes)
    except Exception as e:  # any storage error: the row fails, the job does not
        raise MediaError(BAD_SIDECAR, redact_text(f"{shown}: cannot read: {e}", sidecar_uri)) from e
    if len(data) > max_bytes:
        raise MediaError(BAD_SIDECAR, f"{shown}: larger than the {max_bytes}-byte limit (decode.sidecar_max_bytes)")
    content = decode_text(data)
    suffix = posixpath.splitext(sidecar_uri)[1].lower()
    try:
        cues = parse_srt(content) if suffix == ".srt" else parse_vtt(content) if suffix == ".vtt" else None
    except ValueError as e:
        raise MediaError(BAD_SIDECAR, f"{shown}: {e}") from e
    if cues is not None:
        if len(cues) > max_cues:
            raise MediaError(
                BAD_SIDECAR, f"{shown}: {len(cues)} cues, over the limit of {max_cues} (decode.sidecar_max_cues)"
            )
        return cues
    if suffix == ".txt":
        text = " ".join(content.split())
        return [Segment(None, None, text)] if text else []
    raise MediaError(BAD_SIDECAR, f"{shown}: unknown transcript type {suffix!r}")


def _read_capped(fs: fsspec.AbstractFileSystem, uri: str, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes of ``uri`` (one more than the limit shows it is over)."""
    if isinstance(fs, LocalFileSystem):
        # A FIFO or device named .srt would block the read, or never end.
        mode = os.stat(fs._strip_protocol(uri)).st_mode
        if not stat.S_ISREG(mode):
            raise OSError("not a regular file")
    return fs.cat_file(uri, start=0, end=max_bytes + 1)


def load_sidecar_transcript(
    video_uri: str, fs: fsspec.AbstractFileSystem | None = None, required: bool = False
) -> list[Segment] | None:
    """The video's sidecar transcript as segments; None when it has none (the text modality is absent).

    Raises:
        MediaError: kind ``BAD_SIDECAR`` when the sidecar is unparsable, or missing and ``required``.
    """
    fs = fs if fs is not None else url_to_fs(video_uri)[0]
    sidecar = find_sidecar(video_uri, fs)
    if sidecar is None:
        if required:
            stem = posixpath.splitext(video_uri)[0]
            raise MediaError(BAD_SIDECAR, f"{video_uri}: no transcript ({stem}{{.srt,.vtt,.txt}})")
        return None
    return read_sidecar(sidecar, fs)


def decode_text(data: bytes) -> str:
    """Decode a text file: UTF-16 or UTF-8 (BOM or not), falling back to Windows-1252.

    Subtitle files in the wild are often UTF-16 (Windows tools) or cp1252; none of this is
    worth failing a row over.
    """
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


# -- SRT and WebVTT ------------------------------------------------------------------------

# Hours optional (WebVTT allows mm:ss.ttt); ',' (SRT) or '.' (VTT) before the fraction.
_TIMESTAMP = r"(?:\d+:)?\d{1,2}:\d{1,2}(?:[.,]\d+)?"
_TIMING = re.compile(rf"^\s*({_TIMESTAMP})\s*-->\s*({_TIMESTAMP})(?:\s+.*)?$")
# Markup tags (<i>, </b>, <font ...>, <v Speaker>, <c.cls>, <00:00:01.000>) but not a bare "a < b".
_TAG = re.compile(r"</?[A-Za-z0-9][^<>]*>")
# ASS-style override codes some SRT files carry, e.g. {\an8}.
_ASS_CODE = re.compile(r"\{\\[^}]*\}")


def parse_srt(content: str) -> list[Segment]:
    """Parse SubRip cues. Tolerates a BOM, CRLF, missing cue numbers and '.' for ','.

    Raises:
        ValueError: a cue without a valid ``start --> end`` line, or with end before start.
    """
    cues: list[Segment] = []
    for line_no, block in _blocks(content):
        timing_at = next((i for i, line in enumerate(block) if "-->" in line), None)
        if timing_at is None:
            if cues:
                # A blank line inside a cue's text split it in two: the rest belongs to that cue.
                last = cues[-1]
                cues[-1] = Segment(last.start, last.end, _join(last.text, _clean(block)))
                continue
            raise ValueError(f"line {line_no}: expected a 'start --> end' timing line")
        if timing_at > 1:
            raise ValueError(f"line {line_no}: unexpected text before the timing line")
        cue = _cue(block[timing_at], block[timing_at + 1 :], line_no + timing_at)
        if cue is not None:
            cues.append(cue)
    return cues


def parse_vtt(content: str) -> list[Segment]:
    """Parse WebVTT cues, skipping the header, NOTE, STYLE and REGION blocks and cue settings.

    Raises:
        ValueError: no ``WEBVTT`` signature, a cue block without a valid timing line, or end
            before start.
    """
    blocks = list(_blocks(content))
    if not blocks or not re.match(r"^WEBVTT(?:[ \t].*)?$", blocks[0][1][0]):
        raise ValueError("not a WebVTT file: the first line must be 'WEBVTT'")
    cues: list[Segment] = []
    for line_no, block in blocks[1:]:  # blocks[0] is the header and its metadata lines
        first = block[0]
        if re.match(r"^(?:NOTE|STYLE|REGION)(?:[ \t].*)?$", first):
            continue
        timing_at = 0 if "-->" in first else 1  # an optional cue identifier comes first
        if timing_at >= len(block) or "-->" not in block[timing_at]:
            raise ValueError(f"line {line_no}: expected a 'start --> end' timing line")
        cue = _cue(block[timing_at], block[timing_at + 1 :], line_no + timing_at)
        if cue is not None:
            cues.append(cue)
    return cues


def _cue(timing_line: str, text_lines: list[str], line_no: int) -> Segment | None:
    match = _TIMING.match(timing_line)
    if match is None:
        raise ValueError(f"line {line_no}: bad timing line {timing_line.strip()!r}")
    start, end = _seconds(match.group(1)), _seconds(match.group(2))
    if end < start:
        raise ValueError(f"line {line_no}: cue ends ({end}) before it starts ({start})")
    text = _clean(text_lines)
    # A cue with nothing to read (only markup) adds no text; dropping it keeps joins clean.
    return Segment(start, end, text) if text else None


def _seconds(stamp: str) -> float:
    clock, _, fraction = stamp.replace(",", ".").partition(".")
    parts = [int(p) for p in clock.split(":")]
    hours, minutes, seconds = ([0] * (3 - len(parts)) + parts)[-3:]
    if minutes >= 60 or seconds >= 60:
        raise ValueError(f"bad timestamp {stamp!r}")
    return hours * 3600 + minutes * 60 + seconds + (float("0." + fraction) if fraction else 0.0)


def _clean(lines: Iterable[str]) -> str:
    text = " ".join(lines)
    text = _ASS_CODE.sub("", _TAG.sub("", text))
    return " ".join(html.unescape(text).split())


def _join(a: str, b: str) -> str:
    return f"{a} {b}".strip()


def _blocks(content: str) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number of the first line, lines) for each blank-line-separated block."""
    content = content.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    block: list[str] = []
    start = 0
    for number, line in enumerate(content.split("\n"), start=1):
        if line.strip():
            if not block:
                start = number
            block.append(line.rstrip())
        elif block:
            yield start, block
            block = []
    if block:
        yield start, block


# -- dataset formats -----------------------------------------------------------------------

# "Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me."
_IEMOCAP_LINE = re.compile(r"^(\S+)\s+\[(\d+(?:\.\d*)?)-(\d+(?:\.\d*)?)\]:\s*(.*?)\s*$")

_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
# "<video_id>___<segment>___<start>___<end>___<text>". The id is matched lazily and the segment
# must be digits, so ids that contain or end in '_' still split right; the text keeps its '_'s.
_MOSEI_LINE = re.compile(rf"^(.+?)___(\d+)___({_NUMBER})___({_NUMBER})___(.*?)\s*$")


def parse_iemocap_transcription(content: str) -> dict[str, Segment]:
    """Utterance id -> Segment from an IEMOCAP ``transcriptions/<dialog>.txt``.

    Lines that are not ``<id> [<start>-<end>]: <text>`` (e.g. ``M: [BREATHING]``) are skipped:
    they belong to no annotated utterance.
    """
    out: dict[str, Segment] = {}
    for line in content.lstrip("\ufeff").splitlines():
        match = _IEMOCAP_LINE.match(line)
        if match:
            utt_id, start, end, text = match.groups()
            out[utt_id] = Segment(float(start), float(end), text)
    return out


def parse_mosei_transcript(content: str) -> dict[tuple[str, str], Segment]:
    """(video_id, segment_id) -> Segment from CMU-MOSEI segmented-transcript lines, in file order.

    Lines that do not have the five ``___``-separated fields are skipped.
    """
    out: dict[tuple[str, str], Segment] = {}
    for line in content.lstrip("\ufeff").splitlines():
        match = _MOSEI_LINE.match(line.strip())
        if match:
            video_id, segment, start, end, text = match.groups()
            out.setdefault((video_id, segment), Segment(float(start), float(end), text))
    return out
