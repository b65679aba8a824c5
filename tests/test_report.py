"""``fv2es report`` on a scoring output, a run folder and a preprocess output written here by hand
(following the README's schemas), without Ray."""

import argparse
import html
import json
import re
import struct
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from fv2es import charts, report
from fv2es.cli import main as cli_main
from fv2es.commands import report as report_command
from fv2es.emotions import IEMOCAP_EMOTIONS
from fv2es.report import write_report
from fv2es.timeline import emotion_name

EMOTIONS = list(IEMOCAP_EMOTIONS)
MODEL_ID = "0123456789abcdef"
BAD_ERROR = "moov atom not found <truncated & unreadable>"
# video name -> number of segments (2 s windows); "single" is drawn as bars, "broken" fails whole.
VIDEOS = {"talk_a.mp4": 9, "talk_b.mp4": 5, "single.mp4": 1, "broken.mp4": 1}
PNG_PX = {"dominant_emotions.png": charts.DOMINANT_PX, "statuses.png": charts.STATUS_PX,
          "learning_curves.png": charts.CURVES_PX, "confusion_test.png": charts.CONFUSION_PX}
LABELS = {"talk_a.mp4": "fru", "talk_b.mp4": "hap", "single.mp4": "neu", "broken.mp4": "sad"}


def said(name: str, k: int) -> str:
    """The transcript of segment ``k`` of video ``name`` (HTML-special characters included)."""
    return f"{name} says <{k}> & more"


def _segment_rows(root: str, videos: dict[str, int]) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for v, (name, count) in enumerate(videos.items()):
        for k in range(count):
            status, error = "ok", ""
            if name == "broken.mp4":
                status, error = "invalid_container", BAD_ERROR
            elif name == "talk_a.mp4" and k == 4:
                status, error = "bad_segment", "segment 8.0-10.0 s is after the end of the media"
            logits = np.sin(k / 2 + np.arange(len(EMOTIONS)) * 1.3 + v) * 2 + rng.normal(0, 0.2, len(EMOTIONS))
            probs = 1 / (1 + np.exp(-logits))
            ok = status == "ok"
            rows.append({
                "video_uri": f"{root}/videos/{name}", "segment_index": k, "segment_count": count,
                "utterance_id": None, "start": 2.0 * k, "end": None if name == "broken.mp4" else 2.0 * k + 2.0,
                "video_duration_s": None if name == "broken.mp4" else 2.0 * count, "text": said(name, k), "speaker_side": None,
                "frames_sampled": 4 * ok, "faces_found": 4 * ok, "piece_count": 5 * ok, "has_video": ok,
                "has_audio": ok, **{f"prob_{e}": float(p) if ok else None for e, p in zip(EMOTIONS, probs)},
                "top_emotion": EMOTIONS[int(np.argmax(probs))] if ok else None,
                "predicted": [e for e, p in zip(EMOTIONS, probs) if p >= 0.5] if ok else [],
                "model_id": MODEL_ID, "status": status, "error": error,
                "decode_ms": 10.0, "face_ms": 5.0, "model_ms": 3.0,
            })
    return rows


SEGMENT_SCHEMA = pa.schema([
    ("video_uri", pa.string()), ("segment_index", pa.int32()), ("segment_count", pa.int32()),
    ("utterance_id", pa.string()), ("start", pa.float64()), ("end", pa.float64()), ("video_duration_s", pa.float64()),
    ("text", pa.string()), ("speaker_side", pa.string()), ("frames_sampled", pa.int32()), ("faces_found", pa.int32()),
    ("piece_count", pa.int32()), ("has_video", pa.bool_()), ("has_audio", pa.bool_()),
    *[(f"prob_{e}", pa.float64()) for e in EMOTIONS], ("top_emotion", pa.string()),
    ("predicted", pa.list_(pa.string())), ("model_id", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("decode_ms", pa.float64()), ("face_ms", pa.float64()), ("model_ms", pa.float64()),
], metadata={"fv2es.emotions": json.dumps(EMOTIONS), "fv2es.model_id": MODEL_ID,
             "fv2es.checkpoint": "runs/demo/best.safetensors"})


def write_scores(root, videos: dict[str, int] = VIDEOS) -> dict:
    """A complete `fv2es score` output: segments/part-0.parquet, videos.parquet, _SUCCESS; ``videos``
    maps names to segment counts ("broken.mp4" fails whole; "talk_a.mp4"'s segment 4 fails)."""
    from fv2es.score.summary import summarize_videos  # the job's own per-video summary

    (root / "segments").mkdir(parents=True)
    segments = pa.Table.from_pylist(_segment_rows(str(root), videos), schema=SEGMENT_SCHEMA)
    pq.write_table(segments, root / "segments" / "part-0.parquet")
    table = summarize_videos(segments, EMOTIONS)
    pq.write_table(table.replace_schema_metadata(SEGMENT_SCHEMA.metadata), root / "videos.parquet")
    statuses = table["status"].to_pylist()
    n = len(videos)
    counts = {"inputs": n, "videos": n, "videos_ok": statuses.count("ok"),
              "videos_failed": n - statuses.count("ok"), "segments": segments.num_rows,
              "segments_ok": segments["status"].to_pylist().count("ok"), "model_id": MODEL_ID}
    (root / "_SUCCESS").write_text(json.dumps(counts))
    return counts


def write_labels(path, scores_root, labels: dict[str, str] = LABELS):
    """A manifest (JSONL) giving each scored video of ``write_scores`` its true label."""
    path.write_text("".join(json.dumps({"video_uri": f"{scores_root}/videos/{name}", "label": label}) + "\n"
                            for name, label in labels.items()))
    return path


def write_run(root, epochs: int = 4):
    """A run folder's metrics.jsonl (one JSON object per epoch, as `fv2es train` writes it)."""
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for epoch in range(epochs):
        f1 = [0.4, 0.6, 0.75, 0.7][epoch % 4]
        rows.append({"epoch": epoch, "train_loss": 1.2 / (epoch + 1), "valid_avg_f1": f1, "test_avg_f1": f1 - 0.05,
                     "valid_acc": f1 + 0.1, "test_acc": f1 + 0.05, **{f"test_f1_{e}": f1 for e in EMOTIONS},
                     **{f"valid_f1_{e}": f1 for e in EMOTIONS}, "best_epoch": 2 if epoch >= 2 else epoch})
    (root / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def check_pngs(out, page: str) -> list[str]:
    """Every PNG the page references exists, is a PNG of its documented size and is not blank."""
    names = re.findall(r'<img src="([^"]+)" width="(\d+)" height="(\d+)"', page)
    assert names
    for name, width, height in names:
        data = (out / name).read_bytes()
        expected = PNG_PX[name]
        assert png_size(data) == (int(width), int(height)) == expected, name
        with Image.open(out / name) as image:
            assert image.size == expected
            assert np.asarray(image.convert("L"), dtype=float).std() > 5, f"{name} looks blank"
    assert sorted(p.name for p in out.glob("*.png")) == sorted(n for n, _, _ in names)
    return [n for n, _, _ in names]


class Elements(HTMLParser):
    """The page's elements as (tag, attributes, text inside), for checking its structure."""

    def __init__(self, page: str):
        super().__init__()
        self.found, self.open = [], []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        element = (tag, dict(attrs), [])
        self.found.append(element)
        if tag not in ("i", "img", "br", "meta"):
            self.open.append(element)

    def handle_endtag(self, tag):
        if any(name == tag for name, _, _ in self.open):
            while self.open.pop()[0] != tag:
                pass

    def handle_data(self, data):
        for element in self.open:
            element[2].append(data)

    def select(self, tag: str, cls: str | None = None, **attrs) -> list[tuple[dict, str]]:
        """(attributes, text) of the ``tag`` elements with class ``cls`` and these attribute values."""
        return [(a, "".join(t)) for name, a, t in self.found if name == tag
                and (cls is None or cls in (a.get("class") or "").split())
                and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]


def timeline_of(page: str, name: str, root) -> Elements:
    """The elements of the timeline figure of video ``name``."""
    uri = html.escape(f"{root}/scores/videos/{name}")
    figure = re.search(rf'<figure class=timeline id="tl-\d+" data-video="{re.escape(uri)}">.*?</figure>', page, re.S)
    assert figure, name
    return Elements(figure.group(0))


@pytest.fixture(scope="module")
def scores_and_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    counts = write_scores(root / "scores")
    write_run(root / "run")
    labels = write_labels(root / "labels.jsonl", root / "scores")
    index = write_report(root / "out", scores_uri=str(root / "scores"), run_uri=str(root / "run"),
                         labels_uri=str(labels))
    return root, counts, index


def test_report_page_and_charts(scores_and_run):
    root, counts, index = scores_and_run
    page = index.read_text()
    names = check_pngs(index.parent, page)
    # the summary charts that apply (something failed: the status chart); timelines are HTML
    assert sorted(names) == sorted(["dominant_emotions.png", "statuses.png", "learning_curves.png"])
    table = Elements(re.search(r"<table class=sortable id=videos.*?</table>", page, re.S).group(0))
    cells = [c for c in table.select("td") if c[0].get("title", "").startswith(str(root))]
    # every video, named relative to the folder they share (its full URI in the tooltip)
    assert sorted(c[1] for c in cells) == sorted(VIDEOS)
    assert {c[0]["title"] for c in cells} == {f"{root}/scores/videos/{name}" for name in VIDEOS}
    assert f"<td>videos under</td><td>{root}/scores/videos/</td>" in page
    assert "invalid_container" in page and "bad_segment" in page
    assert html.escape(BAD_ERROR) in page and BAD_ERROR not in page
    for key in ("videos_ok", "videos_failed", "segments", "segments_ok"):
        assert f"<td>{key.replace('_', ' ')}</td><td>{counts[key]}</td>" in page
    assert counts == {**counts, "videos_ok": 3, "videos_failed": 1, "segments": 16, "segments_ok": 14}
    assert MODEL_ID in page and "No <code>_SUCCESS</code>" not in page
    # the run: 4 epochs, the best one (2) highlighted in the per-epoch table
    assert "4 epochs; best epoch 2" in page
    assert "<tr class=best><td>2</td>" in page


def test_timelines_are_spans_over_each_segments_time_with_its_transcript(scores_and_run):
    root, _, index = scores_and_run
    page = index.read_text()
    # sorted by name: single, talk_a, talk_b (broken has no scored segment: no timeline)
    assert [html.unescape(v) for v in re.findall(r'<figure class=timeline id="tl-\d+" data-video="([^"]+)"', page)] \
        == [f"{root}/scores/videos/{n}" for n in ("single.mp4", "talk_a.mp4", "talk_b.mp4")]
    tl = timeline_of(page, "talk_a.mp4", root)
    assert tl.select("div", "tl")[0][0]["data-duration"] == "18"  # the axis is the whole video, from 0
    for e in EMOTIONS:  # one row per emotion: a bar across each ok segment, as high as its probability
        bars = [a for a, _ in tl.select("span", "seg") if a.get("data-p") and a["title"].startswith(emotion_name(e))]
        assert [(a["data-start"], a["data-end"]) for a in bars] == \
            [(f"{2 * k}", f"{2 * k + 2}") for k in range(9) if k != 4]
        assert all(f"left:{100 * float(a['data-start']) / 18:.3f}%;width:{100 * 2 / 18:.3f}%" in a["style"]
                   for a in bars)
    (failed,) = tl.select("span", "failed")
    assert (failed[0]["data-start"], failed[0]["data-end"], failed[0]["data-status"]) == ("8", "10", "bad_segment")
    # under the bars, what was said in each segment, under its own time
    said_row = tl.select("span", "say")
    assert [(a["data-start"], a["data-end"], text) for a, text in said_row] == \
        [(f"{2 * k}", f"{2 * k + 2}", said("talk_a.mp4", k)) for k in range(9)]
    assert html.escape(said("talk_a.mp4", 3)) in page and said("talk_a.mp4", 3) not in page
    # a one-segment video: its bars span the whole axis, one per emotion, in the emotions' colours
    single = timeline_of(page, "single.mp4", root)
    bars = [a for a, _ in single.select("span", "seg") if a.get("data-p")]
    assert [(a["data-start"], a["data-end"]) for a in bars] == [("0", "2")] * len(EMOTIONS)
    tab10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]
    assert [re.search(r"background:(#\w+)", a["style"]).group(1) for a in bars] == tab10
    assert all("left:0.000%;width:100.000%" in a["style"] for a in bars)


def test_legend_names_every_emotion_in_full(scores_and_run):
    _, _, index = scores_and_run
    legend = {a["data-emotion"]: text for a, text in Elements(index.read_text()).select("span", "lg")}
    assert legend == {"ang": "ang = angry", "exc": "exc = excited", "fru": "fru = frustrated",
                      "hap": "hap = happy", "neu": "neu = neutral", "sad": "sad"}


def test_true_label_column_when_labels_are_given(scores_and_run, tmp_path):
    root, _, index = scores_and_run
    table = re.search(r"<table class=sortable id=videos.*?</table>", index.read_text(), re.S).group(0)
    head = [t for _, t in Elements(table).select("th")]
    assert head == ["video", "duration (s)", "segments ok", "true label", "dominant", "mean probability", "status"]
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1])
    true = {Elements(r).select("td")[0][1]: Elements(r).select("td")[3] for r in rows}
    assert {name: (a["title"], text) for name, (a, text) in true.items()} == \
        {name: (label, emotion_name(label)) for name, label in LABELS.items()}  # full name, code in the tooltip
    # without labels, no such column
    plain = write_report(tmp_path / "out", scores_uri=str(root / "scores")).read_text()
    assert "<th>true label</th>" not in plain and "dominant emotion = true label" not in plain


def test_no_failures_no_failure_chart_and_every_video_listed(tmp_path):
    many = {f"clip_{i:03d}.mp4": 1 for i in range(report.PAGE_ROWS + 5)}  # more than one page
    counts = write_scores(tmp_path / "scores", many)
    assert counts["videos_failed"] == 0 and counts["segments_ok"] == counts["segments"] == len(many)
    page = write_report(tmp_path / "out", scores_uri=str(tmp_path / "scores")).read_text()
    assert check_pngs(tmp_path / "out", page) == ["dominant_emotions.png"]  # no statuses.png
    assert "No failed videos or segments." in page and "failure kind" not in page
    table = Elements(re.search(r"<table class=sortable id=videos.*?</table>", page, re.S).group(0))
    assert sorted(t for a, t in table.select("td") if "title" in a and t.startswith("clip_")) == sorted(many)
    assert f'data-page="{report.PAGE_ROWS}"' in page and "<script>" in page


def test_incomplete_output_is_summarised(tmp_path):
    write_scores(tmp_path / "scores")
    (tmp_path / "scores" / "_SUCCESS").unlink()
    (tmp_path / "scores" / "videos.parquet").unlink()
    page = write_report(tmp_path / "out", scores_uri=str(tmp_path / "scores")).read_text()
    assert "No <code>_SUCCESS</code>" in page and "<td>videos failed</td><td>1</td>" in page
    check_pngs(tmp_path / "out", page)


def test_confusion_matrix_counts():
    targets = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 0], [0, 1, 1], [0, 0, 1]], dtype=np.float32)
    probs = np.array([[.9, .1, 0], [.2, .7, .1], [.3, .3, .4], [.1, .2, .7], [.5, .1, .4]])
    # the all-zero row is skipped; a multi-label row counts under its first emotion
    assert charts.confusion_matrix(probs, targets, 3).tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 0]]


def write_examples(root, rows_per_emotion: int = 2) -> int:
    """A tiny `fv2es preprocess` output (examples/part-0.parquet + metadata.json); returns the number of
    usable test rows."""
    from fv2es.shards import EXAMPLE_COLUMNS, EXAMPLE_SCHEMA

    rng = np.random.default_rng(1)
    rows = []
    for i in range(len(EMOTIONS) * rows_per_emotion + 2):
        label = EMOTIONS[i % len(EMOTIONS)]
        split, status = ("train", "ok") if i >= len(EMOTIONS) * rows_per_emotion else ("test", "ok")
        if i == 0:
            status = "decode_error"  # not usable: predict_split skips it
        pieces, faces = int(rng.integers(1, 4)), int(rng.integers(1, 3))
        rows.append({
            "id": f"utt{i}", "split": split, "labels": [label], "target": [float(e == label) for e in EMOTIONS],
            "dataset": "manifest", "video_uri": f"v{i}.mp4", "start": 0.0, "end": 1.0, "text": "",
            "faces": rng.integers(0, 255, (faces, 48, 48, 3), dtype=np.uint8).tobytes(),
            "face_mask": bytes([1] * faces), "frames_sampled": faces, "faces_found": faces,
            "pieces": rng.normal(size=(pieces, 4, 32, 32)).astype(np.float32).tobytes(), "piece_count": pieces,
            "has_video": True, "has_audio": True, "status": status, "error": "",
        })
    schema = pa.schema([("id", pa.string()), ("split", pa.string()), ("labels", pa.list_(pa.string())),
                        ("target", pa.list_(pa.float32())), ("dataset", pa.string()), ("video_uri", pa.string()),
                        ("start", pa.float64()), ("end", pa.float64()), ("text", pa.string()),
                        ("faces", pa.binary()), ("face_mask", pa.binary()), ("frames_sampled", pa.int32()),
                        ("faces_found", pa.int32()), ("pieces", pa.binary()), ("piece_count", pa.int32()),
                        ("has_video", pa.bool_()), ("has_audio", pa.bool_()), ("status", pa.string()),
                        ("error", pa.string())])
    assert schema.names == EXAMPLE_COLUMNS and schema == EXAMPLE_SCHEMA
    (root / "examples").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / "examples" / "part-0.parquet")
    (root / "metadata.json").write_text(json.dumps({"emotions": EMOTIONS, "dataset": "manifest"}))
    return sum(r["split"] == "test" and r["status"] == "ok" for r in rows)


def test_confusion_matrix_of_best_checkpoint(tmp_path, monkeypatch):
    import torch

    from fv2es.config import config_from_dict
    from fv2es.models import create_model, save_checkpoint

    torch.manual_seed(0)
    cfg = config_from_dict({"model": {"preset": "fv2es_tiny", "modalities": "a"}})
    run = write_run(tmp_path / "run")
    save_checkpoint(str(run / "best.safetensors"), create_model(cfg.model, pretrained_text=False),
                    thresholds=[0.5] * 6)
    test_rows = write_examples(tmp_path / "data")
    drawn = []
    draw = report.draw_confusion
    monkeypatch.setattr(report, "draw_confusion", lambda *a: drawn.append(draw(*a)) or drawn[-1])

    page = write_report(tmp_path / "out", run_uri=str(run), data_uri=str(tmp_path / "data")).read_text()
    assert check_pngs(tmp_path / "out", page) == ["learning_curves.png", "confusion_test.png"]
    (matrix,) = drawn
    assert matrix.shape == (6, 6) and matrix.sum() == test_rows == 11
    assert matrix.sum(1).tolist() == [1, 2, 2, 2, 2, 2]  # true rows: the failed "ang" row is left out
    assert f"{test_rows} labelled utterances" in page


def test_command(tmp_path, capsys):
    write_scores(tmp_path / "scores")
    parser = argparse.ArgumentParser()
    report_command.add_arguments(parser)
    assert report_command.run(parser.parse_args(["--output", str(tmp_path / "none")])) == 2
    capsys.readouterr()
    # User errors are caught once, by the CLI: one line, exit 2.
    assert cli_main(["report", "--run", str(tmp_path / "missing"), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fv2es report: ") and "no metrics.jsonl" in err[0]
    args = parser.parse_args(["--scores", str(tmp_path / "scores"), "--output", str(tmp_path / "out")])
    assert report_command.run(args) == 0
    assert (tmp_path / "out" / "index.html").exists()


def test_scoring_output_on_s3(tmp_path, s3_endpoint):
    import fsspec

    write_scores(tmp_path / "scores")
    fsspec.filesystem("s3", **s3_endpoint).put(str(tmp_path / "scores"), "data/scores", recursive=True)
    page = write_report(tmp_path / "out", scores_uri="s3://data/scores", storage_options=s3_endpoint).read_text()
    assert len(check_pngs(tmp_path / "out", page)) == 2  # dominant emotions, statuses (timelines are HTML)
    assert "<td>segments ok</td><td>14</td>" in page and html.escape(BAD_ERROR) in page
