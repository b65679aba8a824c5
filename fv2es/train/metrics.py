"""The seed's evaluation: thresholds, per-emotion metrics and their averages (numpy + scikit-learn).

Conventions shared by every function here:

* ``probs`` is an ``(N, E)`` float array of per-emotion probabilities (sigmoid outputs for ``bce``;
  softmax outputs for ``ce``), ``targets`` an ``(N, E)`` array of 0/1 (one-hot for a single-label
  corpus such as IEMOCAP, multi-hot for CMU-MOSEI; a row may be all zero).
* An emotion is predicted when its probability is **strictly greater** than its threshold
  (``probs > threshold``, as the seed binarises), so a threshold of 0.5 leaves a probability of
  exactly 0.5 negative.
* Divisions by zero in precision / recall / F1 give 0 (scikit-learn's ``zero_division=0``).
  ROC-AUC is NaN for an emotion whose targets hold a single class; weighted accuracy is NaN for an
  emotion without positives or without negatives. Averages (``avg_*``) are ``nanmean`` over the
  emotions (NaN only when every emotion is NaN).
* Every metric value is a plain Python ``float`` (NaN included: ``json.dumps`` writes it as ``NaN``).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from fv2es.emotions import DEFAULT_THRESHOLD

__all__ = [
    "DEFAULT_THRESHOLD",
    "HEADLINE",
    "LOSSES",
    "THRESHOLD_GRID",
    "argmax_metrics",
    "binary_metrics",
    "choose_thresholds",
    "evaluate",
    "headline",
    "loss_pos_weight",
    "mosei_metrics",
]

# Candidate decision thresholds: 0.05, 0.10, ..., 0.95 (19 values).
THRESHOLD_GRID = np.round(np.arange(0.05, 0.96, 0.05), 2)

# The losses the seed trains with; see :func:`evaluate` for how each is evaluated.
LOSSES = ("bce", "ce")

# The metrics printed after training and evaluation (every metric is recorded): see :func:`headline`.
HEADLINE = ("acc", "avg_f1", "avg_auc", "avg_acc", "avg_wacc")


# ---------------------------------------------------------------------------------------------
# helpers


def _as_probs_targets(probs, targets) -> tuple[np.ndarray, np.ndarray]:
    """Validate and convert to ``(float64 probs, bool targets)``, both ``(N, E)`` with ``N >= 1``."""
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(targets)
    if p.ndim != 2:
        raise ValueError(f"probs must be 2-D (N, E), got shape {p.shape}")
    if t.shape != p.shape:
        raise ValueError(f"targets shape {t.shape} differs from probs shape {p.shape}")
    if p.shape[0] == 0 or p.shape[1] == 0:
        raise ValueError(f"need at least one row and one emotion, got shape {p.shape}")
    if not np.all((t == 0) | (t == 1)):
        raise ValueError("targets must hold only 0 and 1")
    return p, t.astype(bool)


def _as_thresholds(thresholds, num_emotions: int) -> np.ndarray:
    th = np.asarray(thresholds, dtype=np.float64)
    if th.ndim == 0:
        th = np.full(num_emotions, float(th))
    if th.shape != (num_emotions,):
        raise ValueError(f"thresholds must have shape ({num_emotions},), got {th.shape}")
    return th


def _check_emotions(emotions: Sequence[str], num_emotions: int) -> list[str]:
    names = [str(e) for e in emotions]
    if len(names) != num_emotions:
        raise ValueError(f"{len(names)} emotion names for {num_emotions} probability columns")
    if len(set(names)) != len(names):
        raise ValueError(f"duplicate emotion names: {names}")
    return names


def _counts(pred: np.ndarray, true: np.ndarray, axis: int = 0) -> tuple[np.ndarray, ...]:
    """(tp, fp, fn, tn) counts of boolean arrays along ``axis``, as float64."""
    tp = np.sum(pred & true, axis=axis, dtype=np.float64)
    fp = np.sum(pred & ~true, axis=axis, dtype=np.float64)
    fn = np.sum(~pred & true, axis=axis, dtype=np.float64)
    tn = np.sum(~pred & ~true, axis=axis, dtype=np.float64)
    return tp, fp, fn, tn


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0 where den == 0 (sklearn's zero_division=0)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    out = np.zeros(np.broadcast(num, den).shape, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    # 2PR/(P+R) == 2TP/(2TP+FP+FN); 0 when there is no positive prediction nor positive target.
    return _safe_div(2.0 * tp, 2.0 * tp + fp + fn)


def _auc(scores: np.ndarray, true: np.ndarray) -> float:
    """ROC-AUC of one emotion; NaN when its targets hold a single class."""
    from sklearn.metrics import roc_auc_score  # here: scoring imports this module for DEFAULT_THRESHOLD only

    if true.all() or not true.any():
        return float("nan")
    return float(roc_auc_score(true.astype(np.int64), scores))


def _per_emotion(per: dict[str, np.ndarray], names) -> dict[str, float]:
    """``{metric: (E,) values}`` -> ``metric_<emotion>`` keys plus NaN-ignoring ``avg_<metric>``."""
    out: dict[str, float] = {}
    for j, name in enumerate(names):
        for key, values in per.items():
            out[f"{key}_{name}"] = float(values[j])
    for key, values in per.items():
        out[f"avg_{key}"] = _nanmean(values)
    return out


def _nanmean(values) -> float:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0 or np.all(np.isnan(arr)):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(arr))


def _is_single_label(targets: np.ndarray) -> bool:
    """True when every row has at most one positive."""
    return bool(np.all(targets.sum(axis=1) <= 1))


# ---------------------------------------------------------------------------------------------
# public API


def choose_thresholds(probs, targets) -> np.ndarray:
    """Per emotion, the threshold of :data:`THRESHOLD_GRID` that maximises binary F1 on these rows.

    F1 of emotion ``e`` at threshold ``t`` is that of ``probs[:, e] > t`` against ``targets[:, e]``
    (0 when undefined). Ties go to the smallest threshold. An emotion with no positive row gets
    0.5. This is what validation does; test reuses validation's thresholds. Returns ``(E,)`` float64.
    """
    p, t = _as_probs_targets(probs, targets)
    # preds: (G, N, E) for the G grid thresholds.
    preds = p[None, :, :] > THRESHOLD_GRID[:, None, None]
    tp, fp, fn, _ = _counts(preds, t[None, :, :], axis=1)  # each (G, E)
    f1 = _f1(tp, fp, fn)
    best = THRESHOLD_GRID[np.argmax(f1, axis=0)].astype(np.float64)  # argmax: first (smallest) of ties
    best[~t.any(axis=0)] = DEFAULT_THRESHOLD
    return best


def binary_metrics(probs, targets, thresholds, emotions: Sequence[str]) -> dict[str, float]:
    """Per-emotion binary metrics at the given thresholds, and their averages.

    For each emotion ``e`` (predicted = ``probs[:, e] > thresholds[e]``):

    * ``acc_<e>``: (TP + TN) / N;
    * ``recall_<e>``: TP / (TP + FN), 0 if no positive target;
    * ``precision_<e>``: TP / (TP + FP), 0 if no positive prediction;
    * ``f1_<e>``: 2 TP / (2 TP + FP + FN), 0 if undefined;
    * ``auc_<e>``: ROC-AUC of the raw probabilities, NaN when the targets hold a single class.

    Plus ``avg_acc``, ``avg_recall``, ``avg_precision``, ``avg_f1``, ``avg_auc``: nanmean over emotions.
    """
    p, t = _as_probs_targets(probs, targets)
    names = _check_emotions(emotions, p.shape[1])
    th = _as_thresholds(thresholds, p.shape[1])
    pred = p > th[None, :]
    tp, fp, fn, tn = _counts(pred, t)
    per = {
        "acc": (tp + tn) / p.shape[0],
        "recall": _safe_div(tp, tp + fn),
        "precision": _safe_div(tp, tp + fp),
        "f1": _f1(tp, fp, fn),
        "auc": np.array([_auc(p[:, j], t[:, j]) for j in range(p.shape[1])]),
    }
    out = _per_emotion(per, names)
    return out


def argmax_metrics(probs, targets) -> dict[str, float]:
    """Single-label metrics of the argmax prediction (the seed's ``ce`` metrics).

    The true class of a row is the index of its single positive; rows whose target is all zero are
    skipped, and a row with more than one positive is an error. The predicted class is
    ``argmax(probs[row])`` (the first on ties). Over the kept rows:

    * ``acc``: fraction of rows whose predicted class is the true class;
    * ``recall``, ``precision``, ``f1``: macro averages, i.e. unweighted means over the classes that
      occur among the true or the predicted classes (scikit-learn's ``average="macro"``), of the
      per-class recall, precision and F1 (0 on zero division). Macro F1 is the mean of the per-class
      F1s, not the F1 of macro precision and recall.

    All four are NaN when no row has a positive.
    """
    p, t = _as_probs_targets(probs, targets)
    positives = t.sum(axis=1)
    if np.any(positives > 1):
        raise ValueError("argmax metrics need single-label targets (at most one positive per row)")
    keep = positives == 1
    if not keep.any():
        return {key: float("nan") for key in ("acc", "recall", "precision", "f1")}
    true = np.argmax(t[keep], axis=1)
    pred = np.argmax(p[keep], axis=1)
    classes = np.union1d(true, pred)
    onehot_true = true[:, None] == classes[None, :]
    onehot_pred = pred[:, None] == classes[None, :]
    tp, fp, fn, _ = _counts(onehot_pred, onehot_true)
    return {
        "acc": float(np.mean(true == pred)),
        "recall": float(np.mean(_safe_div(tp, tp + fn))),
        "precision": float(np.mean(_safe_div(tp, tp + fp))),
        "f1": float(np.mean(_f1(tp, fp, fn))),
    }


def mosei_metrics(probs, targets, thresholds, emotions: Sequence[str]) -> dict[str, float]:
    """CMU-MOSEI (multi-label) metrics at the given thresholds.

    Per emotion ``e`` (predicted = ``probs[:, e] > thresholds[e]``; P / N = positive / negative rows):

    * ``wacc_<e>``: weighted accuracy ``(TP * N / P + TN) / (2 N)`` (the mean of recall and
      specificity), NaN when P or N is 0;
    * ``f1_<e>``: 2 TP / (2 TP + FP + FN), 0 if undefined;
    * ``auc_<e>``: ROC-AUC of the raw probabilities, NaN when the targets hold a single class;

    plus ``avg_wacc``, ``avg_f1``, ``avg_auc`` (nanmean over emotions), and over each row's label
    sets (predicted set S = emotions predicted, true set T = emotions present), as fractions of rows:

    * ``exact_match``: S == T (all E predictions right; two empty sets match);
    * ``subset_acc``: S ⊆ T with S non-empty, or S == T (so an empty prediction counts only when
      the true set is empty too; the seed's "subset" accuracy);
    * ``intersect_acc``: S ∩ T non-empty, or S and T both empty.

    Every row satisfying ``exact_match`` satisfies ``subset_acc``, and every row satisfying
    ``subset_acc`` satisfies ``intersect_acc``.
    """
    p, t = _as_probs_targets(probs, targets)
    names = _check_emotions(emotions, p.shape[1])
    th = _as_thresholds(thresholds, p.shape[1])
    pred = p > th[None, :]
    tp, fp, fn, tn = _counts(pred, t)
    pos = tp + fn
    neg = tn + fp
    with np.errstate(divide="ignore", invalid="ignore"):
        wacc = np.where((pos > 0) & (neg > 0), (tp * neg / pos + tn) / (2.0 * neg), np.nan)
    per = {
        "wacc": wacc,
        "f1": _f1(tp, fp, fn),
        "auc": np.array([_auc(p[:, j], t[:, j]) for j in range(p.shape[1])]),
    }
    out = _per_emotion(per, names)

    exact = np.all(pred == t, axis=1)
    pred_any = pred.any(axis=1)
    true_any = t.any(axis=1)
    no_false_pos = ~np.any(pred & ~t, axis=1)
    overlap = np.any(pred & t, axis=1)
    out["exact_match"] = float(np.mean(exact))
    out["subset_acc"] = float(np.mean((no_false_pos & pred_any) | exact))
    out["intersect_acc"] = float(np.mean(overlap | (~pred_any & ~true_any)))
    return out


def evaluate(
    probs,
    targets,
    emotions: Sequence[str],
    dataset: str,
    thresholds=None,
    loss: str = "bce",
) -> tuple[dict[str, float], np.ndarray]:
    """The one evaluation entry point: ``(metrics, thresholds)``.

    Thresholds:

    * ``loss="bce"``: when ``thresholds`` is None they are chosen on these rows with
      :func:`choose_thresholds` (validation); otherwise the given ones are used (test reuses
      validation's thresholds).
    * ``loss="ce"``: the model is judged by its argmax, thresholds do not matter; 0.5 is used for
      every emotion and any given ``thresholds`` are ignored.

    Metrics:

    * ``dataset == "mosei"``: :func:`mosei_metrics`;
    * any other dataset: :func:`binary_metrics`;
    * in both cases, when every target row has at most one positive (a single-label corpus),
      :func:`argmax_metrics` too (keys ``acc``, ``recall``, ``precision``, ``f1``), so IEMOCAP always
      reports ``acc`` and ``ce`` runs get the seed's argmax metrics.

    Every metric dict holds ``avg_f1`` (the early-stopping criterion). The returned thresholds are a
    new ``(E,)`` float64 array.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    p, t = _as_probs_targets(probs, targets)
    names = _check_emotions(emotions, p.shape[1])
    if loss == "ce":
        th = np.full(p.shape[1], DEFAULT_THRESHOLD)
    elif thresholds is None:
        th = choose_thresholds(p, t)
    else:
        th = _as_thresholds(thresholds, p.shape[1]).copy()

    metrics = mosei_metrics(p, t, th, names) if dataset == "mosei" else binary_metrics(p, t, th, names)
    if _is_single_label(t):
        metrics.update(argmax_metrics(p, t))
    return metrics, th


def loss_pos_weight(targets) -> np.ndarray:
    """BCE ``pos_weight`` per class: negatives / positives on the training split (the seed's).

    A class with no positive row gets 1.0. Returns ``(E,)`` float64.
    """
    t = np.asarray(targets)
    if t.ndim != 2:
        raise ValueError(f"targets must be 2-D (N, E), got shape {t.shape}")
    if not np.all((t == 0) | (t == 1)):
        raise ValueError("targets must hold only 0 and 1")
    t = t.astype(bool)
    pos = t.sum(axis=0).astype(np.float64)
    neg = t.shape[0] - pos
    weight = np.ones(t.shape[1], dtype=np.float64)
    np.divide(neg, pos, out=weight, where=pos > 0)
    return weight


def headline(metrics: dict, prefix: str = "") -> str:
    """The headline metrics as one line that says what each is, e.g. ``argmax accuracy 1.0000;
    thresholded per emotion, mean: F1 0.8175, accuracy 0.9352; mean AUC 0.9990``.

    The argmax accuracy (single-label data) asks whether the most probable emotion is the labelled
    one; the thresholded metrics binarise each emotion at its validated threshold (a clip can then
    have several emotions, or none) and average over emotions, so a perfect argmax accuracy with a
    lower F1 is no contradiction. ``prefix`` selects keys such as ``test_``.
    """
    def value(key: str) -> float | None:
        v = metrics.get(prefix + key)
        return None if v is None else float(v)

    parts = []
    if value("acc") is not None:
        parts.append(f"argmax accuracy {value('acc'):.4f}")
    per = [f"{label} {value(key):.4f}" for key, label in (("avg_f1", "F1"), ("avg_acc", "accuracy"),
                                                          ("avg_wacc", "weighted accuracy")) if value(key) is not None]
    if per:
        parts.append("thresholded per emotion, mean: " + ", ".join(per))
    if value("avg_auc") is not None:
        parts.append(f"mean AUC {value('avg_auc'):.4f}")
    return "; ".join(parts)
