"""Who speaks when, on the committed test voices laid end to end (tests/pipeline/talking_faces)."""

from __future__ import annotations

import numpy as np
import pytest

from fv2es.media.diarize import SpeakersConfig, diarize, label_job, pieces, speech_frames
from fv2es.media.voices import VoiceEncoder
from tests.pipeline.talking_faces import RATE, turns_audio


@pytest.fixture(scope="module")
def encoder():
    return VoiceEncoder()


def boundary_errors(found, truth) -> list[float]:
    """For each true change of speaker (the middle of the pause between two turns), the distance
    to the nearest found one (seconds)."""
    true = [(a[1] + b[0]) / 2 for a, b in zip(truth, truth[1:]) if a[2] != b[2]]
    got = [(a.end + b.start) / 2 for a, b in zip(found, found[1:])]
    return [min((abs(t - g) for g in got), default=np.inf) for t in true]


@pytest.mark.parametrize(("order", "gap_s", "labels"), [
    ([0, 1, 0, 1], 0.6, ["S0", "S1", "S0", "S1"]),
    ([0, 1, 0, 1], 0.0, ["S0", "S1", "S0", "S1"]),  # no pause: the voice change alone cuts
    ([1, 1, 0, 0], 0.6, ["S0", "S1"]),  # one speaker's two sentences are one turn
    ([0, 1, 2, 0, 1, 2], 0.6, ["S0", "S1", "S2", "S0", "S1", "S2"]),
])
def test_turns_are_found_within_half_a_second(encoder, order, gap_s, labels):
    audio, truth = turns_audio(order, gap_s)
    found = diarize(audio, encoder)
    assert [t.speaker for t in found] == labels
    errors = boundary_errors(found, truth)
    assert len(errors) == len(labels) - 1 and max(errors) <= 0.5, errors  # measured: 0.00 with pauses, 0.13 without
    assert found[0].start == pytest.approx(truth[0][0], abs=0.1)
    assert found[-1].end == pytest.approx(truth[-1][1], abs=0.1)


def test_silence_and_faint_noise_have_no_speaker(encoder):
    rng = np.random.default_rng(0)
    assert diarize(np.zeros(3 * RATE, np.float32), encoder) == []
    assert diarize((rng.standard_normal(3 * RATE) * 0.001).astype(np.float32), encoder) == []


def test_speech_is_found_between_the_pauses():
    audio, truth = turns_audio([0, 1], gap_s=0.6)
    speech = speech_frames(audio)
    edges = np.flatnonzero(np.diff(speech.astype(int))) * 0.01
    assert len(edges) == 4
    assert np.allclose(edges, [truth[0][0], truth[0][1], truth[1][0], truth[1][1]], atol=0.05)


def test_a_video_is_labelled_across_its_segments(encoder):
    """Segments cut anywhere (one across a change of speaker): one label per voice over the video."""
    audio, truth = turns_audio([1, 0, 1, 0], gap_s=0.5)
    cfg = SpeakersConfig()
    cuts = [0.0, truth[1][1] - 0.5, truth[2][1] + 0.2, len(audio) / RATE]  # segment 0 holds turns 0 and most of 1
    spans, embs = [], []
    for a, b in zip(cuts, cuts[1:]):
        piece = audio[int(a * RATE):int(b * RATE)]
        found, emb = pieces(speech_frames(piece, cfg), piece, encoder, cfg)
        spans.append(np.asarray(found, np.float32).reshape(-1, 2) * 0.01 + a)
        embs.append(emb)
    speakers, turns = label_job(spans, embs)
    assert speakers == ["S0", "S0", "S1"]  # S0 (voice 1) speaks first and most of segment 0 and 1
    assert [t.speaker for t in turns[0]] == ["S0", "S1"] and [t.speaker for t in turns[2]] == ["S1"]
    assert turns[0][1].start == pytest.approx(truth[1][0], abs=0.1)
    assert label_job([np.zeros((0, 2))], [np.zeros((0, 256))]) == ([None], [[]])


def test_voice_changes_lie_in_the_pauses_between_two_voices(encoder):
    """The cuts of segments at speaker changes (``segments.mode=auto``): one stretch's pieces,
    clustered, change where the voice does, and only there."""
    from fv2es.media.diarize import voice_changes

    cfg = SpeakersConfig()
    for order, expected in (([0, 1, 0, 1], 3), ([1, 1, 0, 0], 1), ([0, 0], 0)):
        audio, truth = turns_audio(order, gap_s=0.3)
        found, emb = pieces(speech_frames(audio, cfg), audio, encoder, cfg)
        changes = voice_changes(np.asarray(found, np.float32) * 0.01, emb, cfg.threshold)
        pauses = [(a[1], b[0]) for a, b in zip(truth, truth[1:]) if a[2] != b[2]]
        assert len(changes) == len(pauses) == expected
        for (left_end, right_start), (end, start) in zip(changes, pauses):
            assert left_end == pytest.approx(end, abs=0.1) and right_start == pytest.approx(start, abs=0.1)
    assert voice_changes(np.zeros((1, 2)), np.ones((1, 256))) == []
