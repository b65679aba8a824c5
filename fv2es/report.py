"""``fv2es report``: one HTML page with charts of a scoring output and/or a training run.

The page (``index.html``) is self-contained apart from the PNGs written beside it: inline CSS,
``<img>`` tags and tables, every piece of text from the data HTML-escaped. The charts are drawn
by :mod:`fv2es.charts`; the data is read through the owners of the formats: the scoring output
through :class:`~fv2es.score.sink.ScoreOutput`, the shards through :mod:`fv2es.train.evaluate`.

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

import fv2es
from fv2es.charts import (
    CONFUSION_PX,
    CURVES_PX,
    DOMINANT_PX,
    STATUS_PX,
    TIMELINE_PX,
    draw_confusion,
    plot_curves,
    plot_dominant,
    plot_statuses,
    plot_timeline,
)
from fv2es.errors import InputError
from fv2es.score.sink import ScoreOutput, summarize_videos
from fv2es.storage import options_for, redact_uri
from fv2es.train.run import RunFolder

MAX_TIMELINES = 12  # timelines drawn (the first videos by name)
MAX_FAILED_ROWS = 10  # failed videos listed with their errors
MAX_VIDEO_ROWS = 50  # rows of the videos table
SEGMENT_COLUMNS = {"video_uri", "speaker_side", "segment_index", "start", "end", "video_duration_s", "status",
                   "error", "model_id"}


# --- HTML pieces -------------------------------------------------------------------------------

def _short(text: str, width: int = 60) -> str:
    return text if len(text) <= width else text[: width // 2 - 1] + "…" + text[-(width // 2 - 1):]


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
    output = ScoreOutput(uri, options_for(uri, storage_options))
    schema = output.segment_schema()
    if schema is None:
        raise InputError(f"{uri}: no segments/*.parquet; is this an `fv2es score` output?")
    # What the charts and tables use (and summarize_videos needs): not the transcripts or timings.
    segments = output.read_segments([c for c in schema.names if c in SEGMENT_COLUMNS or c.startswith("prob_")])
    meta = output.metadata_of_parts()
    emotions = (json.loads(meta["fv2es.emotions"]) if "fv2es.emotions" in meta
                else [c[5:] for c in segments.column_names if c.startswith("prob_")])
    videos = output.read_videos()
    if videos is None:  # an interrupted run: summarise what was committed, as the job itself would
        videos = summarize_videos(segments, emotions)
    return {"segments": segments, "videos": videos.sort_by("video_uri"), "success": output.success(),
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
                ["emotions", ", ".join(emotions)], ["checkpoint", redact_uri(s["meta"].get("fv2es.checkpoint", ""))]]
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

def run_section(out: Path, run_uri: str, data_uri: str | None = None, storage_options: dict | None = None) -> str:
    """Draw the training run's charts (and, with ``data_uri``, its test confusion matrix) into
    ``out``; returns the HTML section."""
    rows = RunFolder(run_uri, storage_options).metrics()
    if not rows:
        raise InputError(f"{run_uri}: metrics.jsonl is empty")
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
    from fv2es.train.evaluate import predict_split

    checkpoint = RunFolder(run_uri, storage_options).best_uri(best)  # a run still training: its best so far
    predictor, info, probs, targets = predict_split(checkpoint, data_uri, "test", storage_options)
    matrix = draw_confusion(probs, targets, list(info["emotions"]), out / "confusion_test.png")
    caption = (f"test split of {data_uri}: {matrix.sum()} labelled utterances, rows the true emotion, columns "
               f"the predicted one (argmax); checkpoint {predictor.model_id}")
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
