"""speech_segments / words_in_span / text_of: pure functions, checked with numbers."""

from __future__ import annotations

import pytest

from fv2es.asr import Word, confidence_of, speech_segments, text_of, words_in_span


def w(start, end, text=" x", p=0.9):
    return Word(start, end, text, p)


def test_segments_keep_utterances_within_bounds_and_leave_silence_out():
    utts = [(1.0, 4.0), (10.0, 13.5)]
    assert speech_segments(utts, min_s=2.0, max_s=20.0) == [(1.0, 4.0), (10.0, 13.5)]


def test_short_utterance_merges_with_the_nearer_neighbour():
    # 0.5 s "yes" at 5.0: 0.5 s after the first utterance, 2.5 s before the next.
    utts = [(1.0, 4.5), (5.0, 5.5), (8.0, 12.0)]
    assert speech_segments(utts, min_s=2.0, max_s=20.0) == [(1.0, 5.5), (8.0, 12.0)]
    # Nearer on the right this time.
    utts = [(1.0, 4.5), (6.8, 7.2), (7.5, 12.0)]
    assert speech_segments(utts, min_s=2.0, max_s=20.0) == [(1.0, 4.5), (6.8, 12.0)]


def test_runs_of_short_utterances_merge_into_one_segment():
    utts = [(0.0, 0.4), (0.6, 1.0), (1.3, 1.6), (1.8, 2.5)]
    assert speech_segments(utts, min_s=2.0, max_s=10.0) == [(0.0, 2.5)]


def test_short_utterance_stays_alone_across_a_long_pause_or_a_full_neighbour():
    # Gap of 5 s > max_gap_s: not merged, kept (speech is never dropped).
    assert speech_segments([(0.0, 3.0), (8.0, 8.5)], min_s=1.0, max_s=10.0) == [(0.0, 3.0), (8.0, 8.5)]
    # Merging would exceed max_s.
    assert speech_segments([(0.0, 9.8), (10.0, 10.5)], min_s=1.0, max_s=10.0) == [(0.0, 9.8), (10.0, 10.5)]
    # The gap bound is a parameter.
    assert speech_segments([(0.0, 3.0), (8.0, 8.5)], min_s=1.0, max_s=10.0, max_gap_s=6.0) == [(0.0, 8.5)]


def test_long_utterance_splits_evenly_without_words():
    out = speech_segments([(0.0, 25.0)], min_s=1.0, max_s=10.0)
    flat = [t for span in out for t in span]
    assert flat == pytest.approx([0.0, 25 / 3, 25 / 3, 50 / 3, 50 / 3, 25.0])


def test_long_utterance_splits_at_the_largest_word_gap():
    words = [w(0.0, 2.0), w(2.1, 4.0), w(4.2, 6.0), w(7.5, 9.0), w(9.1, 11.0), w(11.05, 12.0)]
    out = speech_segments([(0.0, 12.0)], min_s=1.0, max_s=10.0, words=words)
    assert out == [(0.0, 6.0), (7.5, 12.0)]  # the 1.5 s pause is left out


def test_word_gap_split_respects_min_length_and_recurses():
    # The largest gap (2.0 s) is 0.5 s from the start: a 0.5 s piece is below min_s, so the next
    # largest (1.0 s at 12 s) is used; the left part (0.0-12.0) is still > max_s and splits again.
    words = [w(0.0, 0.5), w(2.5, 6.0), w(6.6, 12.0), w(13.0, 16.0)]
    out = speech_segments([(0.0, 16.0)], min_s=1.0, max_s=10.0, words=words)
    assert out == [(0.0, 6.0), (6.6, 12.0), (13.0, 16.0)]
    assert all(e - s <= 10.0 for s, e in out)


def test_overlapping_or_unsorted_utterances_are_merged_first():
    assert speech_segments([(5.0, 8.0), (0.0, 3.0), (2.0, 4.0)], min_s=0.5, max_s=10.0) == [(0.0, 4.0), (5.0, 8.0)]


def test_empty_and_bad_bounds():
    assert speech_segments([], min_s=1.0, max_s=10.0) == []
    with pytest.raises(ValueError):
        speech_segments([(0.0, 1.0)], min_s=5.0, max_s=2.0)


def test_words_in_span_gives_every_overlapping_word():
    words = [w(0.0, 0.5, " a"), w(0.5, 1.2, " b"), w(1.9, 2.3, " c"), w(2.3, 2.3, " d"), w(3.0, 3.5, " e")]
    assert text_of(words_in_span(words, 0.0, 1.0)) == "a b"
    assert text_of(words_in_span(words, 1.0, 2.0)) == "b c"  # both cross into the window
    assert text_of(words_in_span(words, 2.0, 3.0)) == "c d"  # a zero-length word belongs to its instant
    assert words_in_span(words, 3.5, 9.0) == []  # a word ending at the start does not overlap
    assert words_in_span(words, 2.4, 2.9) == []


def test_text_of_joins_whisper_words():
    assert text_of([w(0, 1, " Hello"), w(1, 2, " world."), w(2, 3, "  ")]) == "Hello world."
    assert text_of([w(0, 1, "你"), w(1, 2, "好")]) == "你好"  # no spaces where the language has none
    assert text_of([]) == ""


def test_confidence_is_the_mean_word_probability():
    assert confidence_of([w(0, 1, p=0.5), w(1, 2, p=1.0)]) == pytest.approx(0.75)
    assert confidence_of([]) is None
