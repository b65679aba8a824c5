"""One inference path: training's validation and the scoring job's model stage agree on every
utterance, and the activation and thresholds come from the checkpoint's typed metadata."""

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from fv2es.compute import train_precision
from fv2es.config import config_from_dict
from fv2es.emotions import DEFAULT_THRESHOLD, prob_column
from fv2es.models import create_model, load_checkpoint, read_checkpoint_info, save_checkpoint
from fv2es.models.checkpoint import _read_metadata
from fv2es.pipeline.packing import pack
from fv2es.predict import Predictor
from fv2es.score.model_stage import ModelStage
from fv2es.shards import EXAMPLE_SCHEMA, table_batches
from fv2es.train.data import ExampleCollate, predict
from fv2es.train.loop import save_model, validation_predictor
from fv2es.train.metrics import evaluate

EMOTIONS = ["ang", "exc", "fru", "hap", "neu", "sad"]
TEXTS = ["I am so angry right now.", "", "What a wonderful day!", "fine.", "Why would you do that?",
         "I miss her.", "", "Okay, okay, okay, okay, okay, okay."]


def example_rows(n: int = len(TEXTS)) -> pa.Table:
    """Example rows as the shards hold them: transcripts (some empty), face crops, spectrogram pieces."""
    rng = np.random.default_rng(3)
    rows = []
    for i in range(n):
        frames, pieces = int(rng.integers(0 if i == 3 else 1, 5)), int(rng.integers(1, 6))
        label = EMOTIONS[i % len(EMOTIONS)]
        rows.append({
            "id": f"utt{i}", "split": "valid", "labels": [label], "target": [float(e == label) for e in EMOTIONS],
            "dataset": "manifest", "video_uri": f"v{i}.mp4", "start": 0.0, "end": 2.0, "text": TEXTS[i],
            "faces": pack(rng.integers(0, 255, (frames, 48, 48, 3), dtype=np.uint8)),
            "face_mask": bytes([1] * frames), "frames_sampled": frames, "faces_found": frames,
            "pieces": pack(rng.normal(size=(pieces, 4, 32, 32)).astype(np.float32)), "piece_count": pieces,
            "has_video": frames > 0, "has_audio": True, "status": "ok", "error": "",
        })
    return pa.Table.from_pylist(rows, schema=EXAMPLE_SCHEMA)


@pytest.fixture(scope="module")
def trained_form_model():
    """A tiny model in its training form (RepVGG branches unfolded), as the loop holds it."""
    torch.manual_seed(0)
    cfg = config_from_dict({"model": {"preset": "fv2es_tiny"}})
    model = create_model(cfg.model)
    with torch.no_grad():  # move BatchNorm statistics off their defaults, so folding does something
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean") or name.endswith("running_var"):
                buffer.copy_(torch.rand_like(buffer) * 0.5 + (0.75 if name.endswith("var") else 0.0))
    return model


@pytest.mark.parametrize("loss", ["bce", "ce"])
def test_validation_and_scoring_agree_on_every_utterance(trained_form_model, tmp_path, loss):
    cfg = config_from_dict({"model": {"preset": "fv2es_tiny"}, "train": {"loss": loss}})
    examples = example_rows()
    thresholds = [0.35, 0.5, 0.45, 0.6, 0.55, 0.4]

    # Training: the epoch's validation path, then the epoch's checkpoint.
    collate = ExampleCollate(cfg.model.text_model, cfg.model.text_max_len)
    predictor = validation_predictor(trained_form_model, cfg, "cpu", collate)
    valid_probs, targets = predict(predictor, table_batches(examples, 32), collate)
    path = str(tmp_path / "model.safetensors")
    save_model(path, trained_form_model, cfg, {"epoch": 0, "thresholds": thresholds}, "manifest")

    # Scoring: the model stage on the same rows, from that checkpoint.
    # At the precision the validation ran at (train.precision and score.precision are both auto:
    # bf16 on a CPU with native bf16, fp32 on one without).
    scored = ModelStage(path, batch_size=32, precision=train_precision(cfg.train, "cpu"))(examples)
    score_probs = np.stack([scored[prob_column(e)].to_numpy() for e in EMOTIONS], 1)
    assert valid_probs.shape == (examples.num_rows, len(EMOTIONS))
    np.testing.assert_array_equal(score_probs, valid_probs.astype(np.float64))
    assert scored["status"].to_pylist() == ["ok"] * examples.num_rows

    # The decisions the score writes are the ones the metrics count.
    predicted = scored["predicted"].to_pylist()
    if loss == "ce":
        assert np.allclose(valid_probs.sum(1), 1.0, atol=1e-5)
        assert predicted == [[EMOTIONS[int(np.argmax(p))]] for p in valid_probs]
    else:
        assert not np.allclose(valid_probs.sum(1), 1.0, atol=1e-3)
        on = valid_probs.astype(np.float64) > np.array(thresholds)  # binary_metrics' rule
        assert predicted == [[e for e, o in zip(EMOTIONS, row) if o] for row in on]
    # And the metrics computed from the scores equal the validation's own.
    again, _ = evaluate(score_probs, targets, EMOTIONS, "manifest", thresholds, loss)
    valid, _ = evaluate(valid_probs, targets, EMOTIONS, "manifest", thresholds, loss)
    assert json.dumps(again, sort_keys=True) == json.dumps(valid, sort_keys=True)  # NaN == NaN here


def test_checkpoint_records_activation_and_thresholds(trained_form_model, tmp_path):
    cfg = config_from_dict({"model": {"preset": "fv2es_tiny"}, "train": {"loss": "ce"}})
    path = str(tmp_path / "ce.safetensors")
    save_model(path, trained_form_model, cfg, {"epoch": 3, "thresholds": [0.3] * 6}, "iemocap")
    info = read_checkpoint_info(path)
    assert info.activation == "softmax" and info.thresholds == [0.3] * 6
    predictor = Predictor.from_checkpoint(path)
    assert predictor.single_label and predictor.thresholds.tolist() == [0.3] * 6

    # A checkpoint without thresholds decides with the one default threshold.
    bare = str(tmp_path / "bare.safetensors")
    save_checkpoint(bare, trained_form_model)
    predictor = Predictor.from_checkpoint(bare)
    assert predictor.activation == "sigmoid" and predictor.thresholds.tolist() == [DEFAULT_THRESHOLD] * 6
    probs = np.array([[0.5, 0.51, 0.1, 0.9, 0.49, 0.5]])
    assert predictor.decide(probs) == [["exc", "hap"]]  # strictly above, as the metrics count


@pytest.mark.parametrize("loss, activation", [("ce", "softmax"), ("bce", "sigmoid"), (None, "sigmoid")])
def test_old_checkpoints_without_the_typed_field(trained_form_model, tmp_path, loss, activation):
    """Checkpoints written before ``activation`` was recorded: it follows ``extra["loss"]``."""
    path = tmp_path / "old.safetensors"
    save_checkpoint(str(path), trained_form_model, extra={} if loss is None else {"loss": loss})
    data = path.read_bytes()
    meta = _read_metadata(data)
    del meta["activation"]
    path.write_bytes(save_safetensors(load_safetensors(data), metadata=meta))
    assert "activation" not in _read_metadata(path.read_bytes())
    assert read_checkpoint_info(str(path)).activation == activation
    assert load_checkpoint(str(path)).activation == activation
    assert json.loads(meta["extra"]) == ({} if loss is None else {"loss": loss})


def test_a_model_trained_on_single_label_data_predicts_one_emotion(trained_form_model, tmp_path):
    """`predicted` listed 3-5 of 6 emotions for the demo's single-label model (BCE, validated
    thresholds of 0.2-0.4); trained on one emotion per utterance, it predicts the argmax."""
    cfg = config_from_dict({"model": {"preset": "fv2es_tiny"}, "train": {"loss": "bce"}})
    probs = np.array([[0.3, 0.9, 0.35, 0.8, 0.1, 0.25]])
    decided = {}
    for single in (True, False):
        path = str(tmp_path / f"{single}.safetensors")
        save_model(path, trained_form_model, cfg, {"epoch": 0, "thresholds": [0.2] * 6}, "manifest", single)
        info = read_checkpoint_info(path)
        assert (info.activation, info.extra["single_label"]) == ("sigmoid", single)
        predictor = Predictor.from_checkpoint(path)
        assert predictor.decision == info.decision and not predictor.single_label  # still sigmoid probabilities
        decided[info.decision] = predictor.decide(probs)
    assert decided == {"argmax": [["exc"]], "thresholds": [["ang", "exc", "fru", "hap", "sad"]]}
