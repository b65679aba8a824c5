"""``fv2es report``: one HTML page with charts of a scoring output and/or a training run.

The page (``index.html``) is self-contained apart from the PNGs written beside it: inline CSS,
``<img>`` tags and tables, every piece of text from the data HTML-escaped. The charts are drawn
by :mod:`fv2es.charts`; the data is read through the owners of the formats: the scoring output
through :func:`fv2es.score.overview.read_overview` (over :class:`~fv2es.score.output.ScoreOutput`), the shards through :mod:`fv2es.train.evaluate`.

* A scoring output (``segments/*.parquet``, ``videos.parquet``, ``_SUCCESS``; any fsspec URI):
  summary counts, the distribution of dominant emotions, the mean probability of each emotion
  fused and per modality, when something failed the videos and segments per status with the
  first failed videos and their errors, emotion timelines of a bounded selection of videos
  (:data:`MAX_TIMELINES`, the first by name or the top by a column the user names; HTML,
  :mod:`fv2es.timeline`: each segment a span over its time, with what was said in it), and a
  sortable, paged table of at most :data:`TABLE_ROWS` videos in the same order, with the total
  and the Parquet file to query for the rest; with a labelled manifest (``labels_uri``) the true
  labels beside the predictions. Its size does not grow with the archive: the whole-output
  figures come from ``videos.parquet`` and the segments' status column read a part at a time,
  and only the selected videos' segment rows are read.
* A training run folder (``metrics.jsonl``, ``best.safetensors``): learning curves with the best
  epoch marked, per-epoch and per-emotion tables, and with a preprocess output (``data_uri``) the
  test confusion matrix of ``best.safetensors``.
"""

from __future__ import annotations

import html
import os
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
    draw_confusion,
    plot_curves,
    plot_dominant,
    plot_statuses,
)
from fv2es.emotions import MODALITY_NAMES, prob_column
from fv2es.errors import InputError
from fv2es.score.overview import read_overview
from fv2es.storage import StorageError, options_for, redact_uri
from fv2es.timeline import CSS as TIMELINE_CSS
from fv2es.timeline import emotion_name, legend, segment_table, timeline
from fv2es.train.run import RunFolder

MAX_TIMELINES = 12  # timelines drawn: the first videos by name, or the top ones by --sort-by
MAX_FAILED_ROWS = 10  # failed videos listed with their errors
PAGE_ROWS = 50  # rows per page of the videos table (the page script pages them)
TABLE_ROWS = 1000  # videos in the table at most (~200 bytes each); the page names the file with every one


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
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(560px,100%),1fr));gap:.5em 2.5em}
table.sortable th{cursor:pointer;user-select:none}table.sortable th[data-dir=asc]::after{content:" \\25B2"}
table.sortable th[data-dir=desc]::after{content:" \\25BC"}td.num{text-align:right}
td.miss{color:#b00}.pager{font-size:14px}.pager button{margin:0 .3em}
""" + TIMELINE_CSS

# Sorts a table.sortable by a clicked column (numbers as numbers) and shows it a page at a time
# (data-page rows); without scripts the whole table shows, unsorted.
SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (t) {
  var body = t.tBodies[0], rows = Array.prototype.slice.call(body.rows), size = +t.dataset.page || 0, page = 0;
  var nav = document.getElementById(t.id + "-pager");
  function key(r, c) { var v = r.cells[c].dataset.v; v = v === undefined ? r.cells[c].textContent : v;
    var n = parseFloat(v); return isNaN(n) || !/^\\s*[-\\d.]/.test(v) ? v.toLowerCase() : n; }
  function show() {
    var pages = size ? Math.max(1, Math.ceil(rows.length / size)) : 1; page = Math.min(page, pages - 1);
    rows.forEach(function (r, i) { r.hidden = size > 0 && (i < page * size || i >= (page + 1) * size); });
    if (nav) { nav.hidden = pages < 2; nav.querySelector("span").textContent = "page " + (page + 1) + " of " + pages; }
  }
  Array.prototype.forEach.call(t.tHead.rows[0].cells, function (th, c) {
    th.addEventListener("click", function () {
      var dir = th.dataset.dir === "asc" ? -1 : 1;
      Array.prototype.forEach.call(t.tHead.rows[0].cells, function (h) { delete h.dataset.dir; });
      th.dataset.dir = dir > 0 ? "asc" : "desc";
      rows.sort(function (a, b) { var x = key(a, c), y = key(b, c);
        return (typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : (typeof x === "number" ? -1 : 1)) * dir; });
      rows.forEach(function (r) { body.appendChild(r); }); page = 0; show();
    });
  });
  if (nav) {
    nav.querySelector(".prev").onclick = function () { page = Math.max(0, page - 1); show(); };
    nav.querySelector(".next").onclick = function () { page += 1; show(); };
    nav.querySelector(".all").onclick = function () { size = 0; show(); nav.hidden = true; };
  }
  show();
});
"""


def check_writable_folder(path, what: str = "output", advice: str = "choose an output folder you can write to") -> Path:
    """Create the local folder ``path`` if needed and check that a file can be written in it, before
    any work; :class:`~fv2es.storage.StorageError` (one line: ``what``, the folder, why, ``advice``)
    when not."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".fv2es-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:  # permission denied, a read-only file system, a file where the folder should be
        raise StorageError(f"{what} {folder} cannot be written ({exc.strerror or type(exc).__name__}); "
                           f"{advice}") from None
    return folder


# --- scoring output ----------------------------------------------------------------------------

def read_labels(uri: str, storage_options: dict | None = None) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The true labels of a manifest (CSV / JSONL / Parquet with ``video_uri`` and ``label`` or
    ``labels``): per video, its rows' labels, the longest-labelled first; and per utterance id."""
    from fv2es.data.manifest import iter_manifest

    per_video: dict[str, dict[str, float]] = {}
    per_utterance: dict[str, list[str]] = {}
    for u in iter_manifest(uri, storage_options=options_for(uri, storage_options)):
        if not u.labels:
            continue
        length = (u.end - u.start) if u.start is not None and u.end is not None else 1.0
        weights = per_video.setdefault(u.video_uri, {})
        for label in u.labels:
            weights[label] = weights.get(label, 0.0) + length
        per_utterance[u.id] = list(u.labels)
    videos = {v: sorted(w, key=lambda e: (-w[e], e)) for v, w in per_video.items()}
    return videos, per_utterance


def _root(uris) -> str:
    """The folder all ``uris`` (a string column) share (``s3://bucket/videos/``), so the tables
    can name them by the rest: the common prefix of the first and last name in order, cut at a
    ``/`` (no Python pass over the names)."""
    uris = pa.chunked_array([uris]) if isinstance(uris, pa.Array) else uris
    if not len(uris) or uris.null_count or not pc.all(pc.match_substring(uris, "/")).as_py():
        return ""
    bounds = pc.min_max(uris).as_py()
    common = os.path.commonprefix([bounds["min"], bounds["max"]])
    return common[: common.rfind("/") + 1] if "/" in common else ""


def _timelines(segments: pa.Table, chosen: list[str], emotions: list[str], root: str, true: dict | None,
               by_utterance: dict | None) -> tuple[list[str], dict]:
    """HTML timelines of the ``chosen`` videos (in that order; each speaker side its own) from
    their segment rows; returns them and the anchor of each drawn (video, side)."""
    by_key: dict[tuple, list[dict]] = {}
    for r in segments.to_pylist():
        by_key.setdefault((r["video_uri"], r.get("speaker_side")), []).append(r)
    rank = {uri: i for i, uri in enumerate(chosen)}
    scored = sorted((k for k, rs in by_key.items() if any(r["status"] == "ok" for r in rs)),
                    key=lambda k: (rank.get(k[0], len(rank)), k[1] or ""))
    figures, anchors = [], {}
    for n, (uri, side) in enumerate(scored[:MAX_TIMELINES]):
        seg = sorted(by_key[(uri, side)], key=lambda r: r.get("segment_index") or 0)
        duration = next((r["video_duration_s"] for r in seg if r.get("video_duration_s") is not None), None)
        name = uri[len(root):] + (f" ({side} speaker)" if side else "")
        ok = sum(r["status"] == "ok" for r in seg)
        labels = (true or {}).get(uri)
        caption = (f"<b>{_esc(name)}</b> · {_esc(f'{duration:.1f} s' if duration else 'duration unknown')} · "
                   f"{ok} of {len(seg)} segment{'s' if len(seg) != 1 else ''} scored"
                   + (f" · true: {_esc(', '.join(emotion_name(e) for e in labels))}" if labels else ""))
        anchors[(uri, side)] = f"tl-{n}"
        figures.append(f'<figure class=timeline id="tl-{n}" data-video="{_esc(uri)}"><figcaption title="{_esc(uri)}">'
                       f"{caption}</figcaption>{timeline(seg, emotions, duration)}"
                       f"{segment_table(seg, emotions, by_utterance)}</figure>")
    return figures, anchors


def _round(value: float | None, digits: int) -> str | None:
    return None if value is None else f"{value:.{digits}f}"


def _videos_table(videos: pa.Table, root: str, true: dict | None, anchors: dict) -> str:
    """The videos of ``videos`` (the capped rows): name (relative to ``root``), duration, segments,
    [true labels], dominant emotion and its mean probability, status; sortable, a page at a time."""
    head = ["video", "duration (s)", "segments ok", *(["true label"] if true is not None else []), "dominant",
            "mean probability", "status"]
    body = []
    for r in videos.to_pylist():
        uri, dominant = r["video_uri"], r["dominant_emotion"]
        anchor = anchors.get((uri, r.get("speaker_side")))
        name = _esc(uri[len(root):])
        cells = [f'<td title="{_esc(uri)}">' + (f'<a href="#{anchor}">{name}</a>' if anchor else name) + "</td>",
                 f"<td class=num>{_esc(_round(r['video_duration_s'], 1))}</td>",
                 f"<td class=num data-v=\"{r['segments_ok']}\">{r['segments_ok']} / {r['segments']}</td>"]
        if true is not None:
            labels = true.get(uri, [])
            agree = bool(labels) and dominant is not None and dominant == labels[0]
            cells.append(f"<td{'' if agree or not labels else ' class=miss'} title=\"{_esc(', '.join(labels))}\">"
                         f"{_esc(', '.join(emotion_name(e) for e in labels))}</td>")
        cells += [f"<td title=\"{_esc(dominant)}\">{_esc(emotion_name(dominant) if dominant else None)}</td>",
                  f"<td class=num>{_esc(_round(r.get(prob_column(dominant)) if dominant else None, 2))}</td>",
                  f"<td>{_esc(r['status'])}</td>"]
        body.append("<tr>" + "".join(cells) + "</tr>")
    table = (f'<table class=sortable id=videos data-page="{PAGE_ROWS}"><thead><tr>'
             + "".join(f"<th>{_esc(h)}</th>" for h in head) + f"</tr></thead><tbody>{''.join(body)}</tbody></table>")
    pager = ('<p class=pager id=videos-pager hidden><button class=prev>&lsaquo; previous</button><span></span>'
             '<button class=next>next &rsaquo;</button><button class=all>show all</button></p>')
    return table + pager


def scores_section(out: Path, scores_uri: str, storage_options: dict | None = None,
                   labels_uri: str | None = None, sort_by: str | None = None, top: int = MAX_TIMELINES) -> str:
    """Draw the scoring output's charts into ``out``; returns the HTML section. ``labels_uri``, a
    manifest with labels, adds the true labels; ``sort_by`` (a column of ``videos.parquet``, e.g.
    ``prob_sad``) picks the videos drawn and listed first, largest first (else by name); ``top``
    how many timelines (at most :data:`MAX_TIMELINES`)."""
    s = read_overview(scores_uri, storage_options, sort_by, min(top, MAX_TIMELINES))
    segments, videos, emotions, success = s["segments"], s["videos"], s["emotions"], s["success"]
    true, by_utterance = read_labels(labels_uri, storage_options) if labels_uri else (None, None)
    root = _root(videos["video_uri"])
    parts = [f"<section id=scores><h2>Scoring output <code>{_esc(scores_uri)}</code></h2>"]
    if success is None:
        parts.append("<p class=warn>No <code>_SUCCESS</code>: this output is incomplete (a run still going or "
                     "interrupted). Figures show the videos committed so far.</p>")
    statuses = {r["values"]: r["counts"] for r in pc.value_counts(videos["status"]).to_pylist()}
    seg_statuses = s["statuses"]
    ok = statuses.get("ok", 0)
    counts = success or {"videos": videos.num_rows, "videos_ok": ok, "videos_failed": videos.num_rows - ok,
                         "segments": sum(seg_statuses.values()), "segments_ok": seg_statuses.get("ok", 0)}
    summary = [[k.replace("_", " "), v] for k, v in counts.items()]
    summary += [["scored seconds", round(float(pc.sum(videos["scored_seconds"]).as_py() or 0.0), 1)],
                ["videos under", root or "(various)"],
                ["emotions", ", ".join(f"{e} ({emotion_name(e)})" if emotion_name(e) != e else e for e in emotions)],
                ["checkpoint", redact_uri(s["meta"].get("fv2es.checkpoint", ""))]]
    if "model_id" not in counts:
        summary.append(["model id", s["meta"].get("fv2es.model_id", "")])
    if true is not None:
        labelled = [(d, true[v]) for v, d in zip(videos["video_uri"].to_pylist(), videos["dominant_emotion"].to_pylist())
                    if v in true]
        agree = sum(d is not None and d == labels[0] for d, labels in labelled)
        summary.append(["dominant emotion = true label", f"{agree} of {len(labelled)} labelled videos"])
    parts += ["<h3>Summary</h3>", _table(["", "value"], summary)]

    plot_dominant(videos.select(["dominant_emotion"]), emotions, out / "dominant_emotions.png")
    parts += ["<h3>Dominant emotions</h3>",
              _img("dominant_emotions.png", DOMINANT_PX, f"{ok} scored videos by dominant "
                   f"emotion (failed videos, which have none: {videos.num_rows - ok})"),
              _modality_means(videos, emotions)]
    parts.append("<h3>Failures</h3>")
    kinds = sorted((set(statuses) | set(seg_statuses)) - {"ok"})
    if kinds:  # the chart and tables only when something failed
        plot_statuses(videos.select(["status"]), _status_column(seg_statuses), out / "statuses.png")
        parts += [_img("statuses.png", STATUS_PX, "videos (a video fails when none of its segments is ok) and "
                       "segments per status"),
                  _table(["failure kind", "videos", "segments"],
                         [[k, statuses.get(k, 0), seg_statuses.get(k, 0)] for k in kinds])]
    failed_count = videos.num_rows - ok
    if failed_count:
        failed = videos.filter(pc.not_equal(videos["status"], "ok")).slice(0, MAX_FAILED_ROWS)
        rows = [[r["video_uri"][len(root):], r["status"], r["error"]]
                for r in failed.select(["video_uri", "status", "error"]).to_pylist()]
        more = f" (first {MAX_FAILED_ROWS} of {failed_count})" if failed_count > MAX_FAILED_ROWS else ""
        parts += [f"<p>Failed videos{more}:</p>", _table(["video", "status", "error"], rows)]
    elif kinds:
        parts.append("<p>No failed videos (some segments failed; see the timelines).</p>")
    else:
        parts.append("<p>No failed videos or segments.</p>")

    figures, anchors = _timelines(segments, s["chosen"], emotions, root, true, by_utterance)
    chosen_by = f"largest {sort_by} first" if sort_by else "by name"
    parts += ["<h3>Emotion timelines</h3>",
              f"<p>The first {len(figures)} of {s['scored']} videos with scored segments, {_esc(chosen_by)}. Each "
              "segment is a span over its time (the axis is the whole video); a bar's height is the emotion's "
              "probability; hatched: a failed segment; empty: time not scored (pauses between utterances). Under "
              "the bars, what was said in each segment.</p>",
              legend(emotions), "<div class=grid>", *figures, "</div>"]
    shown = videos.slice(0, TABLE_ROWS)
    capped = (f" The first {shown.num_rows} of {videos.num_rows} videos, {_esc(chosen_by)}; every video is in "
              f"<code>{_esc(s['videos_uri'])}</code> (query it with any Parquet reader)."
              if videos.num_rows > shown.num_rows else "")
    parts += [f"<h3>Videos ({videos.num_rows})</h3>",
              "<p>Click a column to sort" + (f"; {PAGE_ROWS} a page" if shown.num_rows > PAGE_ROWS else "")
              + (". A true label in red is not the dominant emotion" if true is not None else "") + "." + capped
              + "</p>", _videos_table(shown, root, true, anchors)]
    return "\n".join(parts) + "</section>"


def _modality_means(videos: pa.Table, emotions: list[str]) -> str:
    """A table of each emotion's mean probability over the scored videos, fused and per modality
    (the modalities the output has a column of)."""
    modalities = [m for m in MODALITY_NAMES.values() if any(prob_column(e, m) in videos.column_names for e in emotions)]
    if not modalities:
        return ""
    scored = videos.filter(pc.greater(videos["segments_ok"], 0))

    def mean(column):
        return pc.mean(scored[column]).as_py() if column in scored.column_names else None

    rows = [[emotion_name(e), mean(prob_column(e)), *[mean(prob_column(e, m)) for m in modalities]] for e in emotions]
    return ("<p>Mean probability over the scored videos, fused and as each modality says alone (blank: the "
            "modality is absent):</p>" + _table(["emotion", "fused", *modalities], rows))


def _status_column(counts: dict[str, int]) -> pa.Table:
    """A ``status`` column holding each status its count of times (what the status chart counts)."""
    return pa.table({"status": pa.array(np.repeat(np.array(list(counts) or [""], dtype=object),
                                                  list(counts.values()) or [0]), pa.string())})


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
                 data_uri: str | None = None, storage_options: dict | None = None,
                 labels_uri: str | None = None, sort_by: str | None = None, top: int = MAX_TIMELINES) -> Path:
    """Write ``index.html`` and its PNGs into the local folder ``output_dir``; returns the page's path.

    ``scores_uri`` is an ``fv2es score`` output, ``run_uri`` an ``fv2es train`` run folder (at least
    one is required); ``data_uri`` (an ``fv2es preprocess`` output) adds the run's test confusion
    matrix; ``labels_uri`` (a manifest with labels) the true labels of the scored videos;
    ``sort_by`` / ``top`` choose the videos drawn and listed first (:func:`scores_section`).
    ``storage_options`` apply to remote (e.g. ``s3://``) URIs. A folder that cannot be written
    fails first (:func:`check_writable_folder`), before anything is read.
    """
    if not scores_uri and not run_uri:
        raise ValueError("write_report needs a scoring output (scores_uri) or a training run (run_uri)")
    if data_uri and not run_uri:
        raise ValueError("data_uri (for the confusion matrix) needs a training run (run_uri)")
    if labels_uri and not scores_uri:
        raise ValueError("labels_uri (true labels) needs a scoring output (scores_uri)")
    out = check_writable_folder(output_dir)
    sections = []
    if scores_uri:
        sections.append(scores_section(out, scores_uri, storage_options, labels_uri, sort_by, top))
    if run_uri:
        sections.append(run_section(out, run_uri, data_uri, storage_options))
    sources = " · ".join(f"{k} <code>{_esc(v)}</code>" for k, v in
                         (("scores", scores_uri), ("run", run_uri), ("data", data_uri),
                                                         ("labels", labels_uri)) if v)
    page = (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>fv2es report</title>'
            f"<style>{CSS}</style></head><body>\n<h1>fv2es report</h1>\n"
            f"<p class=meta>{sources}<br>generated {_esc(time.strftime('%Y-%m-%d %H:%M'))} by fv2es "
            f"{_esc(fv2es.__version__)}</p>\n" + "\n".join(sections) + f"\n<script>{SCRIPT}</script>\n</body></html>\n")
    index = out / "index.html"
    index.write_text(page, encoding="utf-8")
    return index
