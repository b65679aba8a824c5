"""FaceCropper on a real photograph (skimage's astronaut) and on frames without a face."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage import data

from fv2es.media.faces import FaceConfig, FaceCropper, centre_crop
from fv2es.models.inputs import normalize_faces

# Where the face is in skimage.data.astronaut() (512x512), found by looking at the image:
# forehead/hair line to chin, ear to ear.
FACE_X = (170, 285)
FACE_Y = (55, 185)


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def cropper() -> FaceCropper:
    return FaceCropper()


def _area_resize(region: np.ndarray, size: int = 48) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(region)).permute(2, 0, 1)[None].float()
    out = F.interpolate(x, size=(size, size), mode="area").round().clamp(0, 255)
    return out[0].permute(1, 2, 0).to(torch.uint8).numpy()


def test_face_found_on_astronaut(cropper, astronaut):
    out = cropper(astronaut[None])
    assert out.crops.shape == (1, 48, 48, 3) and out.crops.dtype == np.uint8
    assert out.face_found.tolist() == [True]
    assert out.probs[0] > 0.95
    x1, y1, x2, y2 = out.boxes[0]
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    assert FACE_X[0] < cx < FACE_X[1] and FACE_Y[0] < cy < FACE_Y[1]
    # The box is face sized (not the whole person, not an eye).
    assert 60 < x2 - x1 < 140 and 60 < y2 - y1 < 160
    # The crop is the face: skin tones dominate, unlike the image as a whole.
    assert out.crops[0, 16:32, 16:32, 0].mean() > 150


def test_detection_downscale_keeps_full_resolution_crop(astronaut):
    # A 1024x1024 frame detected at 320 must still find the face at full-resolution coordinates.
    big = np.repeat(np.repeat(astronaut, 2, axis=0), 2, axis=1)
    out = FaceCropper(FaceConfig(detect_max_side=320))(big[None])
    assert out.face_found[0]
    cx, cy = (out.boxes[0, 0] + out.boxes[0, 2]) / 2, (out.boxes[0, 1] + out.boxes[0, 3]) / 2
    assert 2 * FACE_X[0] < cx < 2 * FACE_X[1] and 2 * FACE_Y[0] < cy < 2 * FACE_Y[1]


@pytest.mark.parametrize("shape", [(90, 160), (160, 90), (64, 64)])
def test_no_face_falls_back_to_exact_centre_crop(cropper, shape):
    rng = np.random.default_rng(0)
    h, w = shape
    # A smooth gradient plus noise: no face, and every pixel position distinguishable.
    frame = (np.linspace(0, 255, h * w).reshape(h, w, 1) + rng.integers(0, 20, (h, w, 3))).clip(0, 255)
    frame = frame.astype(np.uint8)
    out = cropper(frame[None])
    assert out.face_found.tolist() == [False]
    assert np.isnan(out.boxes).all() and np.isnan(out.probs).all()
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    expected = _area_resize(frame[top : top + side, left : left + side])
    np.testing.assert_array_equal(out.crops[0], expected)
    np.testing.assert_array_equal(centre_crop(frame), expected)


def test_flat_frame_is_flat_crop(cropper):
    frame = np.full((120, 160, 3), (10, 200, 30), np.uint8)
    out = cropper(frame[None])
    assert not out.face_found[0]
    assert (out.crops[0] == (10, 200, 30)).all()


def test_left_right_selection(astronaut):
    canvas = np.zeros((512, 1024, 3), np.uint8)
    canvas[:, :512] = astronaut
    left = FaceCropper(FaceConfig(select="left"))(canvas[None])
    right = FaceCropper(FaceConfig(select="right"))(canvas[None])
    assert left.face_found.tolist() == [True]
    assert right.face_found.tolist() == [False]
    # The right-hand fallback is the centre crop of the (black) right half.
    assert (right.crops[0] == 0).all()
    np.testing.assert_array_equal(right.crops[0], centre_crop(canvas, 48, "right"))
    # The left-hand fallback would be the astronaut herself, resized.
    np.testing.assert_array_equal(centre_crop(canvas, 48, "left"), _area_resize(astronaut))


def test_batch_equals_one_at_a_time(astronaut):
    rng = np.random.default_rng(1)
    frames = [astronaut, astronaut[:, ::-1], rng.integers(0, 255, (512, 512, 3), dtype=np.uint8)]
    frames.append(np.roll(astronaut, 60, axis=1))
    frames = np.stack(frames)
    cropper = FaceCropper(FaceConfig(batch_size=3))  # 4 frames -> two MTCNN batches
    batched = cropper(frames)
    assert batched.face_found.tolist() == [True, True, False, True]
    for i in range(len(frames)):
        single = cropper(frames[i : i + 1])
        np.testing.assert_array_equal(batched.crops[i], single.crops[0])
        assert batched.face_found[i] == single.face_found[0]


def test_empty_input(cropper):
    out = cropper(np.zeros((0, 120, 160, 3), np.uint8))
    assert out.crops.shape == (0, 48, 48, 3) and out.face_found.shape == (0,)
    assert normalize_faces(out.crops).shape == (0, 3, 48, 48)
    assert cropper([]).crops.shape == (0, 48, 48, 3)


def test_rejects_a_single_unbatched_frame(cropper, astronaut):
    with pytest.raises(ValueError):
        cropper(astronaut)


def test_tiny_frame_below_min_face_size(cropper):
    out = cropper(np.full((2, 10, 12, 3), 7, np.uint8))
    assert out.face_found.tolist() == [False, False]
    assert (out.crops == 7).all()


def test_normalize_faces_uses_seed_constants():
    crops = np.zeros((2, 48, 48, 3), np.uint8)
    crops[..., 0], crops[..., 1], crops[..., 2] = 159 + 37, 111, 102 - 64
    x = normalize_faces(crops)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 48, 48)
    assert torch.allclose(x[:, 0], torch.ones(1)) and torch.allclose(x[:, 1], torch.zeros(1))
    assert torch.allclose(x[:, 2], torch.full((1,), -2.0))


def test_pickle_roundtrip(cropper, astronaut):
    clone = pickle.loads(pickle.dumps(cropper))
    assert clone.config == cropper.config
    np.testing.assert_array_equal(clone(astronaut[None]).crops, cropper(astronaut[None]).crops)


def test_bad_config_rejected():
    with pytest.raises(ValueError):
        FaceConfig(select="middle")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_matches_cpu(astronaut):
    cpu = FaceCropper()(astronaut[None])
    gpu = FaceCropper(FaceConfig(device="cuda"))(astronaut[None])
    assert gpu.face_found[0]
    np.testing.assert_allclose(gpu.boxes, cpu.boxes, atol=2.0)
