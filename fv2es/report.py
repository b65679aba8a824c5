"""``fv2es report``: one HTML page with charts of a scoring output and/or a training run.

The page (``index.html``) is self-contained apart from the PNGs written beside it: inline CSS,
``<img>`` tags and tables, every piece of text from the data HTML-escaped. Charts are drawn with
matplotlib's Agg canvas (headless; no pyplot state), at fixed sizes so each PNG's pixel size is
known (the ``*_PX`` constants, at ``DPI``).

* A scoring output (``segments/*.parquet``, ``videos.parquet``, ``_SUCCESS``; any fsspec URI):
  summary counts, the distribution of dominant emotions, videos and segments per status, the
  first failed videos with their errors, emotion timelines of the first videos, a table of videos.
* A training run folder (``metrics.jsonl``, ``best.safetensors``): learning curves with the best
  epoch marked, per-epoch and per-emotion tables, and with a preprocess output (``data_uri``) the
  test confusion matrix of ``best.safetensors``.
"""

from __future__ import annotations

import html
import json
import posixpath
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from matplotlib.ticker import MaxNLocator

import fv2es
from fv2es.storage import options_for

DPI = 100
TIMELINE_PX = (640, 300)  # one per video: probability per emotion over time (bars for one segment)
DOMINANT_PX = (800, 360)  # videos per dominant emotion
STATUS_PX = (1000, 400)  # videos (left) and segments (right) per status
CURVES_PX = (1000, 400)  # train loss (left); valid / test avg F1 and accuracy (right)
CONFUSION_PX = (640, 560)  # test confusion matrix of best.safetensors
MAX_TIMELINES = 12  # timelines drawn (the first videos by name)
MAX_FAILED_ROWS = 10  # failed videos listed with their errors
MAX_VIDEO_ROWS = 50  # rows of the videos table
SEGMENT_COLUMNS = {"video_uri", "speaker_side", "segment_index", "start", "end", "video_duration_s", "status",
                   "error", "model_id"}


# --- charts ------------------------------------------------------------------------------------

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


def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width // 2 - 1] + "…" + text[-(width // 2 - 1):]


def plot_timeline(seg: pa.Table, emotions: list[str], title: str, path: Path) -> None:
    """Probabilities of one video's ok segments against time (segment midpoints), failed segments
    shaded; a video with a single ok segment is drawn as bars."""
    colors = emotion_colors(emotions)
    fig = _figure(TIMELINE_PX)
    ax = fig.add_subplot()
    ok = seg.filter(pc.equal(seg["status"], "ok")).sort_by("start")
    start, end = (ok[c].to_numpy(zero_copy_only=False).astype(float) for c in ("start", "end"))
    probs = {e: ok[f"prob_{e}"].to_numpy(zero_copy_only=False).astype(float) for e in emotions}
    if ok.num_rows == 1:
        values = [probs[e][0] for e in emotions]
        bars = ax.bar(emotions, values, color=[colors[e] for e in emotions])
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
        ax.set_xlabel(f"one segment, {start[0]:.1f}-{end[0]:.1f} s")
    else:
        # A gap between ok segments (failed or unscored time) breaks the lines instead of bridging it.
        gap = np.flatnonzero(start[1:] > end[:-1] + 1e-3) + 1
        mid = np.insert((start + end) / 2, gap, np.nan)
        marker = "o" if len(mid) <= 60 else None
        for e in emotions:
            ax.plot(mid, np.insert(probs[e], gap, np.nan), color=colors[e], marker=marker, markersize=3,
                    linewidth=1.5, label=e)
        failed = seg.filter(pc.not_equal(seg["status"], "ok")).to_pylist()
        for i, row in enumerate(r for r in failed if r["start"] is not None and r["end"] is not None):
            ax.axvspan(row["start"], row["end"], color="#d62728", alpha=0.12, linewidth=0,
                       label="failed segment" if i == 0 else None)
        ax.set_xlabel("time (s), segment midpoints")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    _save(fig, path.parent, path.name)


def plot_dominant(videos: pa.Table, emotions: list[str], path: Path) -> None:
    colors = emotion_colors(emotions)
    dominant = videos["dominant_emotion"].to_pylist()
    counts = [sum(d == e for d in dominant) for e in emotions]
    fig = _figure(DOMINANT_PX)
    ax = fig.add_subplot()
    bars = ax.bar(emotions, counts, color=[colors[e] for e in emotions])
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
    ax.set_xticks(ticks, emotions, rotation=30, ha="right")
    ax.set_yticks(ticks, emotions)
    ax.set_xlabel("predicted (argmax)")
    ax.set_ylabel("true")
    accuracy = np.trace(matrix) / max(matrix.sum(), 1)
    ax.set_title(f"test: {matrix.sum()} utterances, argmax accuracy {accuracy:.3f}", fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the true emotion's rows")
    _save(fig, path.parent, path.name)
    return matrix


# --- HTML pieces -------------------------------------------------------------------------------

def _esc(value) -> str:
    if isinstance(value, float):
        value = "" if np.isnan(value) else f"{value:.4g}"
    return html.escape("" if value is None else str(value))


def _table(headers: list[str], rows: list[list], highlight: int | None = None) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "".join(f"<tr{' class=best' if i == highlight else ''}>" + "".join(f"<td>{_esc(v)}</td>" for v in r)
                   + "</tr>" for i, r in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(src: str, px: tuple[int, int], caption: str) -> str:
    return (f'<figure><img src="{_esc(src)}" width="{px[0]}" height="{px[1]}" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>")


CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;max-width:1340px;margin:0 auto;padding:1em 2em}
h1{margin-bottom:.1em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
.meta{color:#666}.warn{background:#fff3cd;border:1px solid #e0c060;padding:.6em 1em;border-radius:4px}
table{border-collapse:collapse;margin:.8em 0;font-size:14px}th,td{border:1px solid #ddd;padding:.3em .7em;text-align:left;vertical-align:top}
th{background:#f3f3f3}tbody tr:nth-child(even){background:#fafafa}tr.best{background:#e6f4e6!important;font-weight:600}
td{max-width:640px;overflow-wrap:anywhere}img{max-width:100%;height:auto;border:1px solid #eee}
figure{margin:.8em 0}figcaption{color:#555;font-size:13px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(600px,1fr));gap:.5em 1.5em}
"""


# --- scoring output ----------------------------------------------------------------------------

def _read_scores(uri: str, storage_options: dict | None) -> dict:
    fs, root = url_to_fs(uri, **options_for(uri, storage_options))
    parts = sorted(p for p in fs.glob(posixpath.join(root, "segments", "*.parquet")))
    if not parts:
        raise FileNotFoundError(f"{uri}: no segments/*.parquet; is this an `fv2es score` output?")
    with fs.open(parts[0], "rb") as f:
        schema = pq.read_schema(f)
    # What the charts and tables use (and summarize_videos needs): not the transcripts or timings.
    columns = [c for c in schema.names if c in SEGMENT_COLUMNS or c.startswith("prob_")]
    tables = []
    for part in parts:
        with fs.open(part, "rb") as f:
            tables.append(pq.read_table(f, columns=columns))
    segments = pa.concat_tables(tables, promote_options="permissive")
    meta = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    emotions = (json.loads(meta["fv2es.emotions"]) if "fv2es.emotions" in meta
                else [c[5:] for c in segments.column_names if c.startswith("prob_")])
    success = None
    if fs.exists(posixpath.join(root, "_SUCCESS")):
        with fs.open(posixpath.join(root, "_SUCCESS"), "r") as f:
            success = json.load(f)
    if fs.exists(posixpath.join(root, "videos.parquet")):
        with fs.open(posixpath.join(root, "videos.parquet"), "rb") as f:
            videos = pq.read_table(f)
    else:  # an interrupted run: summarise what was committed, as the job itself would
        from fv2es.score.sink import summarize_videos

        videos = summarize_videos(segments, emotions)
    return {"segments": segments, "videos": videos.sort_by("video_uri"), "success": success,
            "emotions": emotions, "meta": meta}


def _timelines(out: Path, segments: pa.Table, emotions: list[str]) -> tuple[list[str], int]:
    sides = segments["speaker_side"].to_pylist() if "speaker_side" in segments.column_names else None
    keys = list(zip(segments["video_uri"].to_pylist(), sides or [None] * segments.num_rows))
    ok = segments["status"].to_pylist()
    scored = sorted({k for k, s in zip(keys, ok) if s == "ok"}, key=lambda k: (k[0], k[1] or ""))
    figures = []
    for n, (uri, side) in enumerate(scored[:MAX_TIMELINES]):
        seg = segments.filter(pa.array([k == (uri, side) for k in keys]))
        name = posixpath.basename(uri.rstrip("/")) + (f" ({side} speaker)" if side else "")
        png = f"timeline_{n:02d}.png"
        plot_timeline(seg, emotions, _short(name), out / png)
        figures.append(_img(png, TIMELINE_PX, uri + (f" ({side} speaker)" if side else "")))
    return figures, len(scored)


def scores_section(out: Path, scores_uri: str, storage_options: dict | None = None) -> str:
    """Draw the scoring output's charts into ``out``; returns the HTML section."""
    s = _read_scores(scores_uri, storage_options)
    segments, videos, emotions, success = s["segments"], s["videos"], s["emotions"], s["success"]
    parts = [f"<section id=scores><h2>Scoring output <code>{_esc(scores_uri)}</code></h2>"]
    if success is None:
        parts.append("<p class=warn>No <code>_SUCCESS</code>: this output is incomplete (a run still going or "
                     "interrupted). Figures show the videos committed so far.</p>")
    statuses, seg_statuses = videos["status"].to_pylist(), segments["status"].to_pylist()
    counts = success or {"videos": videos.num_rows, "videos_ok": statuses.count("ok"),
                         "videos_failed": videos.num_rows - statuses.count("ok"), "segments": segments.num_rows,
                         "segments_ok": seg_statuses.count("ok")}
    summary = [[k.replace("_", " "), v] for k, v in counts.items()]
    summary += [["scored seconds", round(float(pc.sum(videos["scored_seconds"]).as_py() or 0.0), 1)],
                ["emotions", ", ".join(emotions)], ["checkpoint", s["meta"].get("fv2es.checkpoint", "")]]
    if "model_id" not in counts:
        summary.append(["model id", s["meta"].get("fv2es.model_id", "")])
    parts += ["<h3>Summary</h3>", _table(["", "value"], summary)]

    plot_dominant(videos, emotions, out / "dominant_emotions.png")
    plot_statuses(videos, segments, out / "statuses.png")
    parts += ["<h3>Dominant emotions</h3>",
              _img("dominant_emotions.png", DOMINANT_PX, f"{statuses.count('ok')} scored videos by dominant "
                   f"emotion (failed videos, which have none: {len(statuses) - statuses.count('ok')})")]
    parts += ["<h3>Failures</h3>", _img("statuses.png", STATUS_PX, "videos (a video fails when none of its "
                                        "segments is ok) and segments per status")]
    kinds = sorted(set(statuses + seg_statuses) - {"ok"})
    if kinds:
        parts.append(_table(["failure kind", "videos", "segments"],
                            [[k, statuses.count(k), seg_statuses.count(k)] for k in kinds]))
    failed = [r for r in videos.to_pylist() if r["status"] != "ok"]
    if failed:
        rows = [[r["video_uri"], r["status"], r["error"]] for r in failed[:MAX_FAILED_ROWS]]
        more = f" (first {MAX_FAILED_ROWS} of {len(failed)})" if len(failed) > MAX_FAILED_ROWS else ""
        parts += [f"<p>Failed videos{more}:</p>", _table(["video", "status", "error"], rows)]
    else:
        parts.append("<p>No failed videos.</p>")

    figures, total = _timelines(out, segments, emotions)
    parts += ["<h3>Emotion timelines</h3>",
              f"<p>The first {len(figures)} of {total} videos with scored segments, by name: probability per "
              f"emotion at each segment's midpoint; failed segments shaded.</p>",
              "<div class=grid>", *figures, "</div>"]
    rows = [[r["video_uri"], r["video_duration_s"], f"{r['segments_ok']} / {r['segments']}", r["dominant_emotion"],
             r.get(f"prob_{r['dominant_emotion']}") if r["dominant_emotion"] else None, r["status"]]
            for r in videos.slice(0, MAX_VIDEO_ROWS).to_pylist()]
    more = f" (first {MAX_VIDEO_ROWS} of {videos.num_rows})" if videos.num_rows > MAX_VIDEO_ROWS else ""
    parts += [f"<h3>Videos{more}</h3>",
              _table(["video", "duration (s)", "segments ok", "dominant", "mean probability", "status"], rows)]
    return "\n".join(parts) + "</section>"


# --- training run ------------------------------------------------------------------------------

def _read_metrics(run_uri: str, storage_options: dict | None) -> list[dict]:
    fs, root = url_to_fs(run_uri, **options_for(run_uri, storage_options))
    path = posixpath.join(root, "metrics.jsonl")
    if not fs.exists(path):
        raise FileNotFoundError(f"{run_uri}: no metrics.jsonl; is this an `fv2es train` run folder?")
    with fs.open(path, "r") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    by_epoch = {r["epoch"]: r for r in rows}  # a resumed run may repeat an epoch: the last one counts
    return [by_epoch[e] for e in sorted(by_epoch)]


def run_section(out: Path, run_uri: str, data_uri: str | None = None, storage_options: dict | None = None) -> str:
    """Draw the training run's charts (and, with ``data_uri``, its test confusion matrix) into
    ``out``; returns the HTML section."""
    rows = _read_metrics(run_uri, storage_options)
    if not rows:
        raise ValueError(f"{run_uri}: metrics.jsonl is empty")
    best = rows[-1].get("best_epoch")
    if best is None:
        best = max(rows, key=lambda r: r.get("valid_avg_f1", -1))["epoch"]
    best_row = next((r for r in rows if r["epoch"] == best), rows[-1])
    plot_curves(rows, best, out / "learning_curves.png")
    parts = [f"<section id=training><h2>Training run <code>{_esc(run_uri)}</code></h2>",
             f"<p>{len(rows)} epochs; best epoch {best} (highest validation average F1).</p>",
             _img("learning_curves.png", CURVES_PX, "learning curves; the dotted line marks the best epoch")]
    keys = [k for k in ("train_loss", "valid_avg_f1", "test_avg_f1", "valid_acc", "test_acc", "valid_avg_auc",
                        "test_avg_auc") if any(k in r for r in rows)]
    table = [[r["epoch"], *[r.get(k) for k in keys]] for r in rows]
    parts += ["<h3>Per epoch</h3>", _table(["epoch", *[k.replace("_", " ") for k in keys]], table,
                                           highlight=[r["epoch"] for r in rows].index(best_row["epoch"]))]
    names = [k[len("test_f1_"):] for k in best_row if k.startswith("test_f1_")]
    if names:
        cols = [c for c in ("valid_f1", "test_f1", "test_precision", "test_recall", "test_auc")
                if f"{c}_{names[0]}" in best_row]
        per = [[e, *[best_row.get(f"{c}_{e}") for c in cols]] for e in names]
        parts += [f"<h3>Per emotion at the best epoch ({best})</h3>",
                  _table(["emotion", *[c.replace("_", " ") for c in cols]], per)]
    if data_uri:
        parts.append(_confusion_html(out, run_uri, best, data_uri, storage_options))
    return "\n".join(parts) + "</section>"


def _confusion_html(out: Path, run_uri: str, best: int, data_uri: str, storage_options: dict | None) -> str:
    from fv2es.train.job import predict_split

    checkpoint = run_uri.rstrip("/") + "/best.safetensors"
    fs, root = url_to_fs(run_uri, **options_for(run_uri, storage_options))
    if not fs.exists(posixpath.join(root, "best.safetensors")):  # a run still training: its best epoch so far
        checkpoint = run_uri.rstrip("/") + f"/checkpoint_epoch_{best:03d}/model.safetensors"
    ckpt, info, probs, targets = predict_split(checkpoint, data_uri, "test", storage_options)
    matrix = draw_confusion(probs, targets, list(info["emotions"]), out / "confusion_test.png")
    caption = (f"test split of {data_uri}: {matrix.sum()} labelled utterances, rows the true emotion, columns "
               f"the predicted one (argmax); checkpoint {ckpt.model_id}")
    return "<h3>Test confusion matrix</h3>" + _img("confusion_test.png", CONFUSION_PX, caption)


# --- the page ----------------------------------------------------------------------------------

def write_report(output_dir, scores_uri: str | None = None, run_uri: str | None = None,
                 data_uri: str | None = None, storage_options: dict | None = None) -> Path:
    """Write ``index.html`` and its PNGs into the local folder ``output_dir``; returns the page's path.

    ``scores_uri`` is an ``fv2es score`` output, ``run_uri`` an ``fv2es train`` run folder (at least
    one is required); ``data_uri`` (an ``fv2es preprocess`` output) adds the run's test confusion
    matrix. ``storage_options`` apply to remote (e.g. ``s3://``) URIs.
    """
    if not scores_uri and not run_uri:
        raise ValueError("write_report needs a scoring output (scores_uri) or a training run (run_uri)")
    if data_uri and not run_uri:
        raise ValueError("data_uri (for the confusion matrix) needs a training run (run_uri)")
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    if scores_uri:
        sections.append(scores_section(out, scores_uri, storage_options))
    if run_uri:
        sections.append(run_section(out, run_uri, data_uri, storage_options))
    sources = " · ".join(f"{k} <code>{_esc(v)}</code>" for k, v in
                         (("scores", scores_uri), ("run", run_uri), ("data", data_uri)) if v)
    page = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>fv2es report</title>'
            f"<style>{CSS}</style></head><body>\n<h1>fv2es report</h1>\n"
            f"<p class=meta>{sources}<br>generated {_esc(time.strftime('%Y-%m-%d %H:%M'))} by fv2es "
            f"{_esc(fv2es.__version__)}</p>\n" + "\n".join(sections) + "\n</body></html>\n")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
