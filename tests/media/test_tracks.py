"""Face tracks (fv2es.media.tracks), the synchrony measure (fv2es.media.speaker), and
FaceCropper.segment on a real photograph: one person's crops, the same as frame by frame."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import data

from fv2es.media.faces import FaceConfig, FaceCropper
from fv2es.media.speaker import envelope, has_speech, speaker_of, synchrony
from fv2es.media.tracks import Candidates, largest, link_tracks, most_confident


def cands(*faces) -> Candidates:
    """A frame's candidates from (x1, y1, x2, y2, prob) tuples."""
    if not faces:
        return Candidates.none()
    arr = np.asarray(faces, np.float64)
    return Candidates(arr[:, :4], arr[:, 4], np.full((len(faces), 5, 2), np.nan))


def test_two_people_linked_left_to_right_through_a_miss_and_a_false_face():
    frames = []
    for f in range(8):
        right = (300 + 4 * f, 50, 380 + 4 * f, 150, 0.99)  # drifts right, 4 px a frame
        left = (40, 60 + 2 * f, 140, 180 + 2 * f, 0.95)  # bigger, drifts down
        faces = [right] if f == 3 else [right, left]  # the left face is missed once
        if f == 5:
            faces.append((200, 200, 220, 220, 0.8))  # a false face, once
        frames.append(cands(*faces))
    tracks = link_tracks(frames)
    assert len(tracks) == 2  # the false face is seen in 1 of 8 frames: no track
    assert [t.index for t in tracks] == [0, 1]
    left, right = tracks
    assert left.frames == [0, 1, 2, 4, 5, 6, 7] and right.frames == list(range(8))
    assert left.median_box()[0] == 40 and right.median_box()[0] == pytest.approx(314)
    assert largest(tracks) is left and most_confident(tracks) is right
    assert left.box_at(3) is None and left.box_at(4)[1] == 68


def test_a_face_that_moves_far_between_samples_stays_one_track():
    # 500 ms apart a head can move by more than its width's third: no overlap left, centre near.
    frames = [cands((100, 100, 160, 160, 0.9)), cands((128, 104, 190, 166, 0.9)), cands((156, 100, 216, 160, 0.9))]
    (track,) = link_tracks(frames)
    assert track.frames == [0, 1, 2]
    # A face twice as far away and of another size is another person.
    assert len(link_tracks([cands((100, 100, 160, 160, 0.9)), cands((300, 100, 420, 220, 0.9))], min_share=0)) == 2


def test_no_faces_and_one_sighting():
    assert link_tracks([Candidates.none()] * 3) == []
    (track,) = link_tracks([Candidates.none(), cands((10, 10, 50, 50, 0.9)), Candidates.none(), Candidates.none(),
                            Candidates.none()])
    assert track.frames == [1]  # under min_share, but the only face there is


def test_track_interpolates_between_its_frames():
    frames = [cands((0, 0, 20, 20, 0.9)), cands((4, 0, 24, 20, 0.9))]
    (track,) = link_tracks(frames)
    boxes, marks = track.at_times(np.array([-1.0, 0.25, 0.5, 2.0]), np.array([0.0, 0.5]))
    np.testing.assert_allclose(boxes[:, 0], [0, 2, 4, 4])
    assert marks.shape == (4, 5, 2)


def test_synchrony_finds_the_pixels_that_follow_the_envelope():
    rng = np.random.default_rng(0)
    env = np.abs(np.sin(np.linspace(0, 12, 40))) + 0.1 * rng.random(40)
    still = 100 + rng.normal(0, 1.0, (40, 240))  # a listener: sensor noise only
    speaking = still.copy()
    speaking[:, 100:160] -= 60 * env[:, None]  # the open mouth is dark
    assert synchrony(speaking, env) > 0.5 > 0.2 > synchrony(still, env)
    assert speaker_of([synchrony(still, env), synchrony(speaking, env)]) == 1
    assert speaker_of([synchrony(still, env)]) is None and speaker_of([]) is None
    assert synchrony(np.full((40, 240), np.nan), env) == 0.0


def test_envelope_and_speech():
    sr = 16000
    tone = np.concatenate([np.zeros(sr), 0.3 * np.sin(np.arange(sr) * 0.2)]).astype(np.float32)
    env = envelope(tone, sr, 10.0, 10.0 + np.arange(0, 2, 0.1))
    assert env[:9].max() == 0 and env[11:] == pytest.approx(0.3 / np.sqrt(2), rel=0.05)
    assert has_speech(env) and not has_speech(envelope(tone[:sr] + 0.002, sr, 0.0, np.arange(0, 1, 0.1)))
    assert not has_speech(np.zeros(0))


@pytest.fixture(scope="module")
def cropper():
    return FaceCropper(FaceConfig())


def test_one_face_segment_is_cropped_as_frame_by_frame(cropper):
    # The astronaut moving across a wider frame, missing from one frame: one track; its crops and
    # masks are exactly what the per-frame largest rule (the stage before face tracks) gave.
    astronaut = data.astronaut()[::2, ::2]
    frames = np.zeros((5, 256, 400, 3), np.uint8)
    for i in range(5):
        if i != 2:
            frames[i, :, 20 * i:20 * i + 256] = astronaut
    out = cropper.segment(frames, speaker=lambda tracks: pytest.fail("one track needs no speaker"))
    before = FaceCropper(FaceConfig(select="largest"))(frames)
    assert len(out.tracks) == 1 and out.track == 0 and out.rule == "largest"
    assert out.face_found.tolist() == [True, True, False, True, True]
    np.testing.assert_array_equal(out.crops, before.crops)
    np.testing.assert_array_equal(out.face_found, before.face_found)


def test_two_faces_take_the_speaker_rule_else_the_largest(cropper):
    astronaut = data.astronaut()
    frames = np.zeros((3, 300, 600, 3), np.uint8)
    frames[:, :256, :256] = astronaut[::2, ::2]  # the larger face, left
    frames[:, :171, 400:571] = astronaut[::3, ::3]  # the smaller, right
    silent = cropper.segment(frames, speaker=lambda tracks: None)
    assert len(silent.tracks) == 2 and silent.rule == "largest" and silent.track == 0
    spoken = cropper.segment(frames, speaker=lambda tracks: 1)
    assert spoken.rule == "speaker" and spoken.track == 1
    assert spoken.boxes[0, 0] > 400 and silent.boxes[0, 0] < 256
    right = FaceCropper(FaceConfig(select="right")).segment(frames, speaker=lambda tracks: 0)
    assert len(right.tracks) == 1 and right.rule == "right" and right.boxes[0, 0] > 400
