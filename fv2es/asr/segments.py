"""Cutting a video at its speech, and giving each segment or window the words it overlaps.

Pure functions on times in seconds; no model. ``speech_segments`` turns utterances (stretches of
speech, from VAD + ASR) into scoring segments within ``[min_s, max_s]`` where the speech allows it;
``split_at_changes`` cuts them again where the speaker changes; ``words_in_span`` gives a segment,
a fixed window or a caption span every word that overlaps it, so a sentence running across
several windows gives text to each of them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Protocol


class _Timed(Protocol):
    start: float
    end: float


class _TimedText(_Timed, Protocol):
    text: str


def speech_segments(
    utterances: Sequence[tuple[float, float]],
    min_s: float,
    max_s: float,
    words: Sequence[_Timed] = (),
    max_gap_s: float = 2.0,
) -> list[tuple[float, float]]:
    """Segments ``(start, end)`` cut at the speech: sorted, disjoint, silence between them not covered.

    An utterance shorter than ``min_s`` is merged with its nearer neighbour when the pause between
    them is at most ``max_gap_s`` and the result stays within ``max_s`` (repeatedly, shortest
    first); one that cannot be merged stays as it is (a lone short reply is still speech). An
    utterance longer than ``max_s`` is split: at the largest pause between two of ``words`` inside
    it that leaves both sides at least ``min_s`` long (the pause itself is left out), else into
    equal pieces; pieces still too long are split again.
    """
    if min_s < 0 or max_s <= 0 or min_s > max_s:
        raise ValueError(f"need 0 <= min_s <= max_s and max_s > 0, got min_s={min_s}, max_s={max_s}")
    spans = sorted((float(s), float(e)) for s, e in utterances if e > s)
    spans = _merge_overlapping(spans)
    spans = _merge_short(spans, min_s, max_s, max_gap_s)
    ordered_words = sorted(words, key=lambda w: (w.start, w.end))
    out: list[tuple[float, float]] = []
    for span in spans:
        out.extend(_split_long(span, min_s, max_s, ordered_words))
    return out


def _merge_overlapping(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for start, end in spans:
        if out and start <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def _merge_short(spans, min_s: float, max_s: float, max_gap_s: float) -> list[tuple[float, float]]:
    spans = list(spans)
    stuck: set[tuple[float, float]] = set()  # short spans that no neighbour can take
    while True:
        short = [i for i, (s, e) in enumerate(spans) if e - s < min_s and (s, e) not in stuck]
        if not short:
            return spans
        i = min(short, key=lambda k: spans[k][1] - spans[k][0])
        start, end = spans[i]
        candidates = []  # (gap, neighbour index)
        if i > 0:
            candidates.append((start - spans[i - 1][1], i - 1))
        if i + 1 < len(spans):
            candidates.append((spans[i + 1][0] - end, i + 1))
        for gap, j in sorted(candidates):
            lo, hi = min(i, j), max(i, j)
            merged = (spans[lo][0], spans[hi][1])
            if gap <= max_gap_s and merged[1] - merged[0] <= max_s:
                spans[lo:hi + 1] = [merged]
                break
        else:
            stuck.add((start, end))


def _split_long(span, min_s: float, max_s: float, words) -> list[tuple[float, float]]:
    start, end = span
    if end - start <= max_s:
        return [span]
    inside = [w for w in words if w.start >= start and w.end <= end]
    best = None  # (gap, left end, right start)
    for left, right in zip(inside, inside[1:]):
        gap = right.start - left.end
        if left.end - start >= min_s and end - right.start >= min_s and (best is None or gap > best[0]):
            best = (gap, left.end, right.start)
    if best is not None and best[1] > start and best[2] < end:
        _, left_end, right_start = best
        return (_split_long((start, left_end), min_s, max_s, words)
                + _split_long((right_start, end), min_s, max_s, words))
    pieces = math.ceil((end - start) / max_s)
    step = (end - start) / pieces
    return [(start + k * step, end if k == pieces - 1 else start + (k + 1) * step) for k in range(pieces)]


def split_at_changes(spans: Sequence[tuple[float, float]], changes: Sequence[tuple[float, float]],
                     min_s: float = 0.2) -> list[tuple[float, float]]:
    """Segments cut where the speaker changes, so that each holds one voice.

    ``changes``: ``(end of one voice, start of the next)`` (:func:`fv2es.media.diarize.voice_changes`);
    a segment holding a change is cut there, the pause between the two voices left out (as a cut
    at a pause is in :func:`speech_segments`), unless a side would be shorter than ``min_s`` (too
    little to be a turn of its own: a voice's last syllable across a boundary). Segments are not
    merged or resized: a reply shorter than ``min_segment_s`` stays its own segment.
    """
    out: list[tuple[float, float]] = []
    for start, end in spans:
        for left_end, right_start in sorted(changes):
            if left_end - start >= min_s and end - right_start >= min_s and right_start >= left_end:
                out.append((start, left_end))
                start = right_start
        out.append((start, end))
    return out


def words_in_span(words: Iterable[_Timed], start: float, end: float) -> list:
    """Every word overlapping ``[start, end)``, in order: a word across a boundary is in both spans.

    A zero-length word (Whisper gives some) belongs to the span holding its instant.
    """
    out = []
    for w in words:
        if w.end > w.start:
            if w.start < end and w.end > start:
                out.append(w)
        elif start <= w.start < end:
            out.append(w)
    return out


def text_of(words: Iterable[_TimedText]) -> str:
    """The text of consecutive words, whitespace normalised.

    A word's text keeps the leading space Whisper writes where the language separates words, so
    joining them as they are is right for English and for languages written without spaces.
    """
    return " ".join("".join(w.text for w in words).split())


def confidence_of(words: Sequence) -> float | None:
    """Mean word probability of ``words`` (a segment's ``asr_confidence``); None when there are none."""
    return sum(w.probability for w in words) / len(words) if words else None
