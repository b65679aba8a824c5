"""The report's per-video emotion timelines, as HTML (no image): every segment is a span over its
own time on an axis from 0 to the end of the video.

One row per emotion (its full name, :data:`fv2es.emotions.EMOTION_NAMES`): a bar across the
segment, as high as its probability, so a video reads as a step chart per emotion. Above them the
most probable emotion of each segment and, under it, the modality that drove it (see
:func:`driving_modality`; shown when the rows carry per-modality columns) and who spoke in it
(its ``speaker``, with the face track linked to that voice; shown when the rows carry one); below them what was
said in it (its transcript), then the time axis. Failed segments are hatched across the top row; time no segment covers (pauses between
utterances are not scored) stays empty. Every span carries ``data-start`` / ``data-end`` (seconds)
and a tooltip with the numbers; a folded table lists the segments in full.
"""

from __future__ import annotations

import html
import math

from matplotlib.colors import to_hex

from fv2es.charts import emotion_colors
from fv2es.emotions import EMOTION_NAMES, MODALITY_NAMES, prob_column

CSS = """
.tl{display:grid;grid-template-columns:96px 1fr;row-gap:2px;font-size:12px;margin:.4em 0}
.tl .lab{color:#444;padding-right:6px;text-align:right;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;align-self:center}
.tl .lab i{display:inline-block;width:9px;height:9px;margin-right:4px;border-radius:2px}
.tl .track{position:relative;height:22px;background:#f6f6f6;border-radius:2px}
.tl .track.top{height:18px}.tl .track.axis{height:16px;background:none;border-top:1px solid #999}
.tl .seg{position:absolute;bottom:0;box-sizing:border-box;border-right:1px solid #fff;overflow:hidden}
.tl .top .seg{top:0;color:#fff;font-size:11px;line-height:18px;padding-left:3px;white-space:nowrap;text-overflow:ellipsis}
.tl .drv .seg{color:#fff}
.tl .seg.failed{background:repeating-linear-gradient(45deg,#d62728 0 3px,#fbe3e3 3px 7px);top:0}
.tl .val{position:absolute;bottom:1px;padding-left:3px;font-size:10px;line-height:12px;color:#111;z-index:1;
  text-shadow:0 0 2px #fff,0 0 2px #fff,0 0 1px #fff;pointer-events:none;white-space:nowrap}
.tl .said{display:grid;height:auto;min-height:18px;background:none}
.tl .said span{font-size:12px;line-height:1.3;padding:1px 3px;overflow:hidden;overflow-wrap:anywhere;
  display:-webkit-box;-webkit-line-clamp:3;-webkit-box-orient:vertical;border-left:1px solid #ccc}
.tl .said span:empty{border-left:none}
.tl .axis span{position:absolute;top:1px;transform:translateX(-50%);color:#666;font-size:11px;white-space:nowrap}
.tl .axis span:first-child{transform:none}.tl .axis span.end{transform:translateX(-100%);color:#333}
.legend{display:flex;flex-wrap:wrap;gap:.3em 1.2em;font-size:13px;margin:.5em 0}
.legend i{display:inline-block;width:11px;height:11px;margin-right:5px;border-radius:2px;vertical-align:-1px}
figure.timeline{margin:.6em 0 1.4em}figure.timeline figcaption{font-size:13px;color:#333}
details.segs{font-size:12px}details.segs table{font-size:12px}
"""

MODALITY_COLORS = {"text": "#4e79a7", "face": "#f28e2b", "voice": "#59a14f"}
SPEAKER_COLORS = ("#6f4e7c", "#0b84a5", "#ca472f", "#9dd866", "#ffa056", "#8dddd0", "#f6c85f", "#7f7f7f")

_STEPS = (0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)


def emotion_name(emotion: str) -> str:
    """The full name of an emotion label (``fru`` -> ``frustrated``); unknown labels as they are."""
    return EMOTION_NAMES.get(emotion, emotion)


def _hex(emotions) -> dict[str, str]:
    return {e: to_hex(c) for e, c in emotion_colors(emotions).items()}


def _esc(value) -> str:
    return html.escape("" if value is None else str(value))


def _num(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".")


def _time(seconds: float) -> str:
    """``2.4 s``, ``1:05``, ``1:02:03`` (tenths kept under an hour when there are any)."""
    if seconds < 60:
        return f"{_num(round(seconds, 2))} s"
    minutes, sec = divmod(round(seconds, 1), 60)
    hours, minutes = divmod(int(minutes), 60)
    sec_text = f"{int(sec):02d}" if sec == int(sec) or hours else f"{sec:04.1f}"
    return f"{hours}:{minutes:02d}:{sec_text}" if hours else f"{minutes}:{sec_text}"


def driving_modality(segment: dict, emotion: str) -> tuple[str | None, dict[str, float]]:
    """Which modality drove ``segment``'s top ``emotion``: the one whose own probability of that
    emotion (``prob_<modality>_<emotion>``) is highest, and each present modality's probability of
    it. (None, {}) when the row carries no per-modality probability (an older output, or a model
    that gives none). The rule compares what each modality says alone, so it reads the same for
    a sigmoid, a softmax and the packaged model, whatever the fusion's weights."""
    said = {m: segment.get(prob_column(emotion, m)) for m in MODALITY_NAMES.values()}
    said = {m: float(p) for m, p in said.items() if p is not None and p == p}  # p == p: not NaN
    return (max(said, key=said.get) if said else None), said


def legend(emotions) -> str:
    """A colour swatch per emotion with its label and full name (``fru`` = frustrated)."""
    colors = _hex(emotions)
    items = []
    for e in emotions:
        name = emotion_name(e)
        text = f"<b>{_esc(e)}</b> = {_esc(name)}" if name != e else f"<b>{_esc(e)}</b>"
        items.append(f'<span class=lg data-emotion="{_esc(e)}"><i style="background:{colors[e]}"></i>{text}</span>')
    return f"<div class=legend>{''.join(items)}</div>"


def _ticks(duration: float) -> list[float]:
    step = next((s for s in _STEPS if duration / s <= 8), _STEPS[-1] * math.ceil(duration / _STEPS[-1] / 8))
    return [i * step for i in range(int(duration / step + 1e-9) + 1)]


def _span(cls: str, start: float, end: float, duration: float, style: str = "", title: str = "",
          body: str = "", extra: str = "") -> str:
    left, width = 100 * start / duration, 100 * max(end - start, 0) / duration
    return (f'<span class="{cls}" data-start="{_num(start)}" data-end="{_num(end)}"{extra} '
            f'style="left:{left:.3f}%;width:{width:.3f}%;{style}" title="{_esc(title)}">{body}</span>')


def timeline(segments: list[dict], emotions: list[str], duration: float | None) -> str:
    """The HTML of one video's timeline from its segment rows (dicts with ``start``, ``end``,
    ``status``, ``error``, ``text``, ``top_emotion`` and ``prob_<emotion>``), any order.

    ``duration`` is the video's (the axis runs from 0 to it; the last segment's end when unknown).
    """
    colors = _hex(emotions)
    rows = sorted((s for s in segments if s.get("start") is not None), key=lambda s: s["start"])
    ends = [s["end"] for s in rows if s.get("end") is not None]
    duration = max([duration or 0.0, *ends, 1e-3])
    ok = [s for s in rows if s["status"] == "ok" and s.get("end") is not None]
    failed = [s for s in rows if s["status"] != "ok"]

    top = []
    for s in ok:
        e = _top(s, emotions)
        p = s.get(prob_column(e))
        top.append(_span("seg", s["start"], s["end"], duration, f"background:{colors.get(e, '#888')}",
                         f"{_time(s['start'])} to {_time(s['end'])}: {emotion_name(e)}"
                         + (f" {p:.2f}" if p is not None else ""), _esc(emotion_name(e)),
                         f' data-emotion="{_esc(e)}"'))
    for s in failed:
        end = s["end"] if s.get("end") is not None else duration
        top.append(_span("seg failed", s["start"], end, duration,
                         title=f"{_time(s['start'])} to {_time(end)}: {s['status']}: {s.get('error') or ''}",
                         extra=f' data-status="{_esc(s["status"])}"'))
    lines = [f'<div class=lab>most probable</div><div class="track top">{"".join(top)}</div>']
    drivers = _drivers(ok, emotions, duration)
    if drivers:
        lines.append(f'<div class=lab title="the modality whose own probability of the top emotion is highest">'
                     f'driven by</div><div class="track top drv">{drivers}</div>')
    speakers = _speakers(rows, duration)
    if speakers:
        lines.append(f'<div class=lab title="who speaks in the segment (one label per voice over the video)">'
                     f'speaker</div><div class="track top drv">{speakers}</div>')

    few = len(ok) <= 12  # the numbers are written on the bars when there are few (and wide) ones
    for e in emotions:
        bars = []
        for s in ok:
            p = s.get(prob_column(e))
            if p is None:
                continue
            bars.append(_span("seg", s["start"], s["end"], duration,
                              f"height:{100 * p:.1f}%;background:{colors[e]}",
                              f"{emotion_name(e)} {p:.2f}, {_time(s['start'])} to {_time(s['end'])}",
                              extra=f' data-p="{p:.4f}"'))
            if few and (s["end"] - s["start"]) / duration >= 0.04:  # beside the bar, never clipped by it
                bars.append(f'<span class=val style="left:{100 * s["start"] / duration:.3f}%">{p:.2f}</span>')
        lines.append(f'<div class=lab title="{_esc(e)}"><i style="background:{colors[e]}"></i>{_esc(emotion_name(e))}'
                     f'</div><div class=track data-emotion="{_esc(e)}">{"".join(bars)}</div>')

    lines.append(f"<div class=lab>said</div>{_said(rows, duration)}")
    ticks = "".join(f'<span style="left:{100 * t / duration:.3f}%">{_time(t)}</span>'
                    for t in _ticks(duration) if t < duration * 0.9 or t == 0)
    ticks += f'<span class=end style="left:100%">{_time(duration)}</span>'  # the end of the video
    lines.append(f"<div class=lab></div><div class=\"track axis\">{ticks}</div>")
    return f'<div class=tl data-duration="{_num(duration)}">{"".join(lines)}</div>'


def _top(segment: dict, emotions: list[str]) -> str:
    return segment.get("top_emotion") or max(emotions, key=lambda x: segment.get(prob_column(x)) or 0.0)


def _drivers(ok: list[dict], emotions: list[str], duration: float) -> str:
    """The "driven by" track: per scored segment, the modality that drove its top emotion."""
    spans = []
    for s in ok:
        e = _top(s, emotions)
        m, said = driving_modality(s, e)
        if m is None:
            continue
        each = ", ".join(f"{k} {p:.2f}" for k, p in said.items())
        spans.append(_span("seg", s["start"], s["end"], duration, f"background:{MODALITY_COLORS[m]}",
                           f"{emotion_name(e)} driven by {m} ({emotion_name(e)} alone: {each})", _esc(m),
                           f' data-modality="{m}"'))
    return "".join(spans)


def speaker_color(label: str) -> str:
    """The colour of speaker ``S<k>`` (the palette repeats after eight)."""
    k = int(label[1:]) if label[1:].isdigit() else 0
    return SPEAKER_COLORS[k % len(SPEAKER_COLORS)]


def _face_of(segment: dict) -> int | None:
    """The face track linked to the segment's speaker (from ``speaker_turns``), if any."""
    import json

    try:
        turns = json.loads(segment.get("speaker_turns") or "[]")
    except ValueError:
        return None
    return next((t[3] for t in turns if len(t) > 3 and t[2] == segment.get("speaker") and t[3] is not None), None)


def _speakers(rows: list[dict], duration: float) -> str:
    """The "speaker" track: per segment with a ``speaker``, its label and linked face track."""
    spans = []
    for s in rows:
        who = s.get("speaker")
        if not who or s.get("end") is None:
            continue
        face = _face_of(s)
        body = who + (f" · face {face}" if face is not None else "")
        spans.append(_span("seg", s["start"], s["end"], duration, f"background:{speaker_color(who)}",
                           f"{_time(s['start'])} to {_time(s['end'])}: speaker {body}", _esc(body),
                           f' data-speaker="{_esc(who)}"'))
    return "".join(spans)


def _said(rows: list[dict], duration: float) -> str:
    """The transcript row: a grid whose columns are the segments (and the gaps between them), as
    wide as their time, so each text sits under its segment and wraps within it."""
    cols, cells, at = [], [], 0.0
    for s in rows:
        end = s["end"] if s.get("end") is not None else duration
        if s["start"] > at + 1e-6:
            cols.append(s["start"] - at)
            cells.append("<span></span>")
        start = max(s["start"], at)
        if end <= start:
            continue
        cols.append(end - start)
        text = (s.get("text") or "").strip()
        cells.append(f'<span class=say data-start="{_num(s["start"])}" data-end="{_num(end)}" '
                     f'title="{_esc(text)}">{_esc(text)}</span>')
        at = end
    if duration > at + 1e-6:
        cols.append(duration - at)
        cells.append("<span></span>")
    template = " ".join(f"minmax(0,{c / duration:.5f}fr)" for c in cols)
    return f'<div class="track said" style="grid-template-columns:{template}">{"".join(cells)}</div>'


def segment_table(segments: list[dict], emotions: list[str], labels: dict[str, list[str]] | None = None) -> str:
    """A folded table of the video's segments: time, status, most probable emotion (and the true
    labels of the manifest's utterance, when known), the transcript."""
    rows = sorted(segments, key=lambda s: (s.get("start") is None, s.get("start") or 0.0))
    speakers = any(s.get("speaker") for s in rows)
    head = ["start", "end", "status", "most probable", "driven by", *(["speaker"] if speakers else []),
            *(["true"] if labels else []), "said"]
    body = []
    for s in rows:
        e = s.get("top_emotion")
        cells = [_num(s["start"]) if s.get("start") is not None else "", _num(s["end"]) if s.get("end") is not None
                 else "", s["status"] if s["status"] == "ok" else f"{s['status']}: {s.get('error') or ''}",
                 f"{emotion_name(e)} {s.get(prob_column(e)):.2f}" if e and s.get(prob_column(e)) is not None else "",
                 (driving_modality(s, e)[0] or "") if e else ""]
        if speakers:
            cells.append(s.get("speaker") or "")
        if labels:
            cells.append(", ".join(emotion_name(x) for x in labels.get(s.get("utterance_id") or "", [])))
        cells.append(s.get("text") or "")
        body.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in cells) + "</tr>")
    return (f"<details class=segs><summary>{len(rows)} segment{'s' if len(rows) != 1 else ''}</summary><table>"
            f"<thead><tr>{''.join(f'<th>{h}</th>' for h in head)}</tr></thead><tbody>{''.join(body)}</tbody>"
            "</table></details>")
