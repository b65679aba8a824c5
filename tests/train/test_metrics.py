import json
import math

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from fv2es.train.metrics import (
    THRESHOLD_GRID,
    argmax_metrics,
    binary_metrics,
    choose_thresholds,
    evaluate,
    loss_pos_weight,
    mosei_metrics,
)


def _random_case(n=60, e=4, seed=0, single_label=False):
    rng = np.random.default_rng(seed)
    probs = rng.random((n, e))
    if single_label:
        targets = np.eye(e, dtype=np.int64)[rng.integers(0, e, n)]
    else:
        targets = (rng.random((n, e)) < 0.4).astype(np.int64)
    return probs, targets


def test_threshold_grid():
    assert THRESHOLD_GRID.shape == (19,)
    assert THRESHOLD_GRID[0] == 0.05 and THRESHOLD_GRID[-1] == 0.95
    np.testing.assert_allclose(np.diff(THRESHOLD_GRID), 0.05)


def test_choose_thresholds_known_best():
    # probs > 0.30 predicts exactly the three positives (F1 = 1); at 0.35 the 0.35 row is dropped
    # (strict >), F1 = 0.8; below 0.30 false positives come in.
    probs = np.array([[0.1], [0.3], [0.35], [0.6], [0.8]])
    targets = np.array([[0], [0], [1], [1], [1]])
    np.testing.assert_array_equal(choose_thresholds(probs, targets), [0.30])


def test_choose_thresholds_ties_and_no_positive():
    # Emotion 0: every threshold in [0.20, 0.85] gives F1 = 1 -> the smallest, 0.20.
    # Emotion 1: no positives -> 0.5.
    # Emotion 2: positive but every probability below the grid -> F1 = 0 everywhere -> 0.05.
    probs = np.array([[0.2, 0.9, 0.01], [0.9, 0.1, 0.02]])
    targets = np.array([[0, 0, 1], [1, 0, 0]])
    th = choose_thresholds(probs, targets)
    assert th.dtype == np.float64
    np.testing.assert_array_equal(th, [0.20, 0.5, 0.05])


def test_choose_thresholds_maximises_sklearn_f1():
    probs, targets = _random_case(n=80, e=3, seed=1)
    th = choose_thresholds(probs, targets)
    for j in range(3):
        scores = [f1_score(targets[:, j], probs[:, j] > t, zero_division=0) for t in THRESHOLD_GRID]
        best = int(np.argmax(scores))
        assert th[j] == THRESHOLD_GRID[best]


def test_binary_metrics_match_sklearn():
    probs, targets = _random_case(n=50, e=4, seed=2)
    probs[:, 3] *= 0.3  # nothing above 0.5 in emotion 3: precision hits zero division
    thresholds = np.array([0.3, 0.5, 0.7, 0.5])
    emotions = ["a", "b", "c", "d"]
    m = binary_metrics(probs, targets, thresholds, emotions)
    for j, e in enumerate(emotions):
        y, pred = targets[:, j], probs[:, j] > thresholds[j]
        assert m[f"acc_{e}"] == pytest.approx(accuracy_score(y, pred))
        assert m[f"recall_{e}"] == pytest.approx(recall_score(y, pred, zero_division=0))
        assert m[f"precision_{e}"] == pytest.approx(precision_score(y, pred, zero_division=0))
        assert m[f"f1_{e}"] == pytest.approx(f1_score(y, pred, zero_division=0))
        assert m[f"auc_{e}"] == pytest.approx(roc_auc_score(y, probs[:, j]))
    assert m["precision_d"] == 0.0 and m["recall_d"] == 0.0 and m["f1_d"] == 0.0
    for key in ("acc", "recall", "precision", "f1", "auc"):
        assert m[f"avg_{key}"] == pytest.approx(np.mean([m[f"{key}_{e}"] for e in emotions]))
    assert all(type(v) is float for v in m.values())


def test_auc_nan_with_one_class_and_nanmean():
    probs = np.array([[0.9, 0.2, 0.7], [0.1, 0.4, 0.6], [0.8, 0.3, 0.2], [0.3, 0.6, 0.9]])
    targets = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1]])
    m = binary_metrics(probs, targets, [0.5, 0.5, 0.5], ["x", "none", "all"])
    assert m["auc_x"] == 1.0
    assert math.isnan(m["auc_none"]) and math.isnan(m["auc_all"])
    assert m["avg_auc"] == 1.0  # nanmean over the one defined AUC
    # The other averages are over all three emotions.
    # x: preds [1,0,1,0] = targets -> acc 1; none: pred row 4 (0.6) -> acc 3/4; all: 3/4 right.
    assert m["avg_acc"] == pytest.approx((1 + 0.75 + 0.75) / 3)
    # every AUC undefined -> NaN average, no warning
    m2 = binary_metrics(probs[:, 1:], targets[:, 1:], [0.5, 0.5], ["none", "all"])
    assert math.isnan(m2["avg_auc"])


def test_argmax_metrics_by_hand():
    # true classes 0,0,1,1,2,2 (and one all-zero row, skipped); predicted 0,1,1,1,2,0.
    probs = np.array(
        [
            [0.7, 0.2, 0.1],
            [0.3, 0.6, 0.1],
            [0.1, 0.8, 0.1],
            [0.2, 0.5, 0.3],
            [0.1, 0.2, 0.7],
            [0.5, 0.1, 0.4],
            [0.9, 0.05, 0.05],  # skipped: would be a wrong prediction otherwise
        ]
    )
    targets = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [0, 0, 1], [0, 0, 0]])
    m = argmax_metrics(probs, targets)
    # class 0: TP1 FP1 FN1 -> P .5 R .5 F1 .5; class 1: TP2 FP1 FN0 -> P 2/3 R 1 F1 .8;
    # class 2: TP1 FP0 FN1 -> P 1 R .5 F1 2/3.
    assert m["acc"] == pytest.approx(4 / 6)
    assert m["recall"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert m["precision"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert m["f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    true, pred = [0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0]
    assert m["f1"] == pytest.approx(f1_score(true, pred, average="macro"))
    assert set(m) == {"acc", "recall", "precision", "f1"}


def test_argmax_metrics_classes_absent_everywhere_are_not_averaged():
    probs = np.array([[0.9, 0.1, 0.0, 0.0], [0.2, 0.8, 0.0, 0.0], [0.6, 0.4, 0.0, 0.0]])
    targets = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 1, 0, 0]])
    m = argmax_metrics(probs, targets)
    true, pred = [0, 1, 1], [0, 1, 0]
    assert m["recall"] == pytest.approx(recall_score(true, pred, average="macro"))  # (1 + .5) / 2
    assert m["recall"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(precision_score(true, pred, average="macro"))


def test_argmax_metrics_edge_cases():
    m = argmax_metrics(np.full((2, 3), 1 / 3), np.zeros((2, 3)))
    assert all(math.isnan(v) for v in m.values())
    with pytest.raises(ValueError, match="single-label"):
        argmax_metrics(np.full((1, 3), 0.5), np.array([[1, 1, 0]]))


def test_mosei_weighted_accuracy_by_hand():
    # Emotion p: P=2, N=4; predicted rows 0 and 2 -> TP=1, TN=3: (1*4/2 + 3) / 8 = 0.625.
    # Emotion n: no positives -> NaN.
    probs = np.array([[0.9, 0.1], [0.1, 0.1], [0.9, 0.9], [0.1, 0.1], [0.1, 0.1], [0.1, 0.1]])
    targets = np.array([[1, 0], [1, 0], [0, 0], [0, 0], [0, 0], [0, 0]])
    m = mosei_metrics(probs, targets, [0.5, 0.5], ["p", "n"])
    assert m["wacc_p"] == pytest.approx(0.625)
    assert math.isnan(m["wacc_n"])
    assert m["avg_wacc"] == pytest.approx(0.625)
    assert m["f1_p"] == pytest.approx(f1_score(targets[:, 0], probs[:, 0] > 0.5))  # 0.5
    assert m["f1_n"] == 0.0
    assert m["avg_f1"] == pytest.approx(0.25)
    assert m["auc_p"] == pytest.approx(roc_auc_score(targets[:, 0], probs[:, 0]))
    assert math.isnan(m["auc_n"]) and m["avg_auc"] == m["auc_p"]
    # wacc is the mean of recall and specificity
    assert m["wacc_p"] == pytest.approx((1 / 2 + 3 / 4) / 2)


def test_mosei_label_set_accuracies():
    # rows as (predicted set, true set) over three emotions, threshold 0.5:
    rows = [
        ({0}, {0}),  # exact, subset, intersect
        ({0}, {0, 1}),  # subset, intersect
        ({0, 2}, {0, 1}),  # intersect
        (set(), {1}),  # none
        (set(), set()),  # exact, subset, intersect
        ({2}, set()),  # none
        ({1}, {0}),  # none
    ]
    probs = np.array([[0.9 if j in s else 0.1 for j in range(3)] for s, _ in rows])
    targets = np.array([[1 if j in s else 0 for j in range(3)] for _, s in rows])
    m = mosei_metrics(probs, targets, [0.5, 0.5, 0.5], ["a", "b", "c"])
    assert m["exact_match"] == pytest.approx(2 / 7)
    assert m["subset_acc"] == pytest.approx(3 / 7)
    assert m["intersect_acc"] == pytest.approx(4 / 7)


def test_evaluate_chooses_thresholds_on_validation_and_reuses_them():
    emotions = ["ang", "exc", "fru", "hap", "neu", "sad"]
    probs, targets = _random_case(n=40, e=6, seed=3, single_label=True)
    metrics, th = evaluate(probs, targets, emotions, "iemocap")
    np.testing.assert_array_equal(th, choose_thresholds(probs, targets))
    expected = binary_metrics(probs, targets, th, emotions) | argmax_metrics(probs, targets)
    assert metrics == pytest.approx(expected, nan_ok=True)
    assert "acc" in metrics and "avg_f1" in metrics and "f1_sad" in metrics
    json.dumps(metrics)
    assert all(type(v) is float for v in metrics.values())

    # test split: validation's thresholds are used as given (and the array is not aliased)
    test_probs, test_targets = _random_case(n=30, e=6, seed=4, single_label=True)
    given = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    metrics2, th2 = evaluate(test_probs, test_targets, emotions, "iemocap", thresholds=given)
    np.testing.assert_array_equal(th2, given)
    assert th2 is not given
    assert metrics2 == pytest.approx(
        binary_metrics(test_probs, test_targets, given, emotions) | argmax_metrics(test_probs, test_targets),
        nan_ok=True,
    )


def test_evaluate_mosei_and_multilabel():
    emotions = ["anger", "disgust", "fear", "happy", "sad", "surprise"]
    probs, targets = _random_case(n=40, e=6, seed=5)
    assert targets.sum(axis=1).max() > 1  # genuinely multi-label
    metrics, th = evaluate(probs, targets, emotions, "mosei")
    assert metrics == pytest.approx(mosei_metrics(probs, targets, th, emotions), nan_ok=True)
    assert "acc" not in metrics and "exact_match" in metrics and "avg_f1" in metrics
    # a non-mosei multi-label manifest: binary metrics, no argmax ones
    metrics_b, _ = evaluate(probs, targets, emotions, "manifest", thresholds=th)
    assert metrics_b == pytest.approx(binary_metrics(probs, targets, th, emotions), nan_ok=True)


def test_evaluate_ce_uses_argmax_and_half_thresholds():
    emotions = ["a", "b", "c"]
    probs, targets = _random_case(n=30, e=3, seed=6, single_label=True)
    metrics, th = evaluate(probs, targets, emotions, "iemocap", thresholds=[0.1, 0.2, 0.3], loss="ce")
    np.testing.assert_array_equal(th, [0.5, 0.5, 0.5])
    assert metrics == pytest.approx(
        binary_metrics(probs, targets, th, emotions) | argmax_metrics(probs, targets), nan_ok=True
    )


def test_evaluate_rejects_bad_input():
    probs, targets = _random_case(n=5, e=3, seed=7)
    with pytest.raises(ValueError, match="loss"):
        evaluate(probs, targets, ["a", "b", "c"], "iemocap", loss="mse")
    with pytest.raises(ValueError, match="emotion names"):
        evaluate(probs, targets, ["a", "b"], "iemocap")
    with pytest.raises(ValueError, match="shape"):
        evaluate(probs, targets[:, :2], ["a", "b", "c"], "iemocap")
    with pytest.raises(ValueError, match="0 and 1"):
        evaluate(probs, targets * 2, ["a", "b", "c"], "iemocap")
    with pytest.raises(ValueError, match="thresholds"):
        evaluate(probs, targets, ["a", "b", "c"], "iemocap", thresholds=[0.5, 0.5])


def test_loss_pos_weight():
    targets = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0]])
    w = loss_pos_weight(targets)
    assert w.dtype == np.float64
    np.testing.assert_allclose(w, [1 / 3, 3.0, 1.0])


def test_headline_says_which_accuracy_and_which_f1():
    """The demo printed `acc 1.0000, avg_f1 0.8175`, which read as a contradiction."""
    from fv2es.train.metrics import headline

    row = {"test_acc": 1.0, "test_avg_f1": 0.8175, "test_avg_acc": 0.93, "test_avg_auc": 0.999, "valid_acc": 0.5}
    assert headline(row, "test_") == ("argmax accuracy 1.0000; thresholded per emotion, mean: F1 0.8175, "
                                      "accuracy 0.9300; mean AUC 0.9990")
    # Multi-label data (CMU-MOSEI): no argmax accuracy, a weighted accuracy.
    assert headline({"avg_f1": 0.5, "avg_wacc": 0.6, "avg_auc": 0.7}) == (
        "thresholded per emotion, mean: F1 0.5000, weighted accuracy 0.6000; mean AUC 0.7000")
