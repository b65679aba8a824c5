"""The report's picture charts: matplotlib's Agg canvas (headless; no pyplot state), at fixed sizes
so each PNG's pixel size is known (the ``*_PX`` constants, at ``DPI``). The per-video timelines
are HTML (:mod:`fv2es.timeline`).

One colour per emotion in every chart (:func:`emotion_colors`); emotions are named in full
(``fru`` -> frustrated, :data:`fv2es.emotions.EMOTION_NAMES`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
from matplotlib.ticker import MaxNLocator

from fv2es.emotions import EMOTION_NAMES

DPI = 100
DOMINANT_PX = (800, 360)  # videos per dominant emotion
STATUS_PX = (1000, 400)  # videos (left) and segments (right) per status
CURVES_PX = (1000, 400)  # train loss (left); valid / test avg F1 and accuracy (right)
CONFUSION_PX = (640, 560)  # test confusion matrix of best.safetensors


def _figure(px: tuple[int, int]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Constrained layout fits titles and outside legends into the fixed size (no bbox_inches="tight",
    # which would change the pixel size).
    fig = Figure(figsize=(px[0] / DPI, px[1] / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, out_dir: Path, name: str) -> str:
    fig.savefig(out_dir / name, dpi=DPI)
    return name


def emotion_colors(emotions) -> dict[str, tuple]:
    """One colour per emotion, the same in every chart."""
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(emotions) <= 10 else "tab20"]
    return {e: cmap(i % cmap.N) for i, e in enumerate(emotions)}


def _names(emotions) -> list[str]:
    return [EMOTION_NAMES.get(e, e) for e in emotions]


def plot_dominant(videos: pa.Table, emotions: list[str], path: Path) -> None:
    """Bars: the number of videos per dominant emotion."""
    colors = emotion_colors(emotions)
    dominant = videos["dominant_emotion"].to_pylist()
    counts = [sum(d == e for d in dominant) for e in emotions]
    fig = _figure(DOMINANT_PX)
    ax = fig.add_subplot()
    bars = ax.bar(_names(emotions), counts, color=[colors[e] for e in emotions])
    ax.bar_label(bars, fontsize=9)
    ax.set_ylim(0, max(counts + [1]) * 1.15)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("videos")
    ax.set_title("dominant emotion per video (duration-weighted mean over its ok segments)", fontsize=10)
    _save(fig, path.parent, path.name)


def _status_bars(ax, statuses: list[str], title: str) -> None:
    kinds = sorted(set(statuses), key=lambda s: (s != "ok", s))[::-1]  # ok on top
    counts = [statuses.count(k) for k in kinds]
    bars = ax.barh(kinds, counts, height=0.6, color=["#2ca02c" if k == "ok" else "#d62728" for k in kinds])
    ax.bar_label(bars, padding=3, fontsize=9)
    ax.set_xlim(0, max(counts + [1]) * 1.15)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("count")
    ax.set_title(title, fontsize=10)


def plot_statuses(videos: pa.Table, segments: pa.Table, path: Path) -> None:
    """Horizontal bars: videos (left) and segments (right) per status, ok on top."""
    fig = _figure(STATUS_PX)
    left, right = fig.subplots(1, 2)
    _status_bars(left, videos["status"].to_pylist(), "videos by status")
    _status_bars(right, segments["status"].to_pylist(), "segments by status")
    _save(fig, path.parent, path.name)


def plot_curves(rows: list[dict], best: int | None, path: Path) -> None:
    """Train loss, and valid / test average F1 and accuracy per epoch; the best epoch marked."""
    epochs = [r["epoch"] for r in rows]
    fig = _figure(CURVES_PX)
    loss_ax, metric_ax = fig.subplots(1, 2)
    loss_ax.plot(epochs, [r.get("train_loss", np.nan) for r in rows], marker="o", color="#444444", label="train loss")
    loss_ax.set_title("training loss", fontsize=10)
    # F1 solid with dots, accuracy dashed with open squares: equal values stay distinguishable.
    style = {"valid_avg_f1": ("#1f77b4", "-", "o"), "test_avg_f1": ("#ff7f0e", "-", "o"),
             "valid_acc": ("#1f77b4", "--", "s"), "test_acc": ("#ff7f0e", "--", "s")}
    for key, (color, line, marker) in style.items():
        if any(key in r for r in rows):
            metric_ax.plot(epochs, [r.get(key, np.nan) for r in rows], color=color, linestyle=line, marker=marker,
                           markersize=7 if marker == "s" else 4, markerfacecolor="none" if marker == "s" else color,
                           label=key.replace("_", " "))
    metric_ax.set_ylim(0, 1.05)
    metric_ax.set_title("validation and test", fontsize=10)
    for ax in (loss_ax, metric_ax):
        if best is not None:
            ax.axvline(best, color="#2ca02c", linestyle=":", linewidth=2, label=f"best epoch ({best})")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    loss_ax.legend(fontsize=8)
    metric_ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    _save(fig, path.parent, path.name)


def confusion_matrix(probs: np.ndarray, targets: np.ndarray, n: int) -> np.ndarray:
    """(E, E) counts: rows the true emotion (argmax of the target; all-zero rows skipped), columns
    the predicted one (argmax of the probabilities)."""
    labelled = np.asarray(targets).max(axis=1) > 0
    matrix = np.zeros((n, n), dtype=np.int64)
    np.add.at(matrix, (np.argmax(targets[labelled], 1), np.argmax(probs[labelled], 1)), 1)
    return matrix


def draw_confusion(probs: np.ndarray, targets: np.ndarray, emotions: list[str], path: Path) -> np.ndarray:
    """Draw the confusion matrix (counts in the cells, colour = share of the true row); returns it."""
    matrix = confusion_matrix(np.asarray(probs), np.asarray(targets), len(emotions))
    share = matrix / np.maximum(matrix.sum(1, keepdims=True), 1)
    fig = _figure(CONFUSION_PX)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i, j in np.ndindex(matrix.shape):
        ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=10,
                color="white" if share[i, j] > 0.5 else "black")
    ticks = range(len(emotions))
    ax.set_xticks(ticks, _names(emotions), rotation=30, ha="right")
    ax.set_yticks(ticks, _names(emotions))
    ax.set_xlabel("predicted (argmax)")
    ax.set_ylabel("true")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"test: {matrix.sum()} utterances, argmax accuracy {accuracy:.3f}", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true row")
    _save(fig, path.parent, path.name)
    return matrix
