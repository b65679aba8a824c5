"""``fv2es report`` on a scoring output, a run folder and a preprocess output written here by hand
(following the README's schemas), without Ray."""

import argparse
import html
import json
import re
import struct

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

EMOTIONS = list(IEMOCAP_EMOTIONS)
MODEL_ID = "0123456789abcdef"
BAD_ERROR = "moov atom not found <truncated & unreadable>"
# video name -> number of segments (2 s windows); "single" is drawn as bars, "broken" fails whole.
VIDEOS = {"talk_a.mp4": 9, "talk_b.mp4": 5, "single.mp4": 1, "broken.mp4": 1}
PNG_PX = {"dominant_emotions.png": charts.DOMINANT_PX, "statuses.png": charts.STATUS_PX,
          "learning_curves.png": charts.CURVES_PX, "confusion_test.png": charts.CONFUSION_PX}


def _segment_rows(root: str) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for v, (name, count) in enumerate(VIDEOS.items()):
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
                "video_duration_s": None if name == "broken.mp4" else 2.0 * count, "text": "", "speaker_side": None,
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


def write_scores(root) -> dict:
    """A complete `fv2es score` output: segments/part-0.parquet, videos.parquet, _SUCCESS."""
    from fv2es.score.sink import summarize_videos  # the job's own per-video summary

    (root / "segments").mkdir(parents=True)
    segments = pa.Table.from_pylist(_segment_rows(str(root)), schema=SEGMENT_SCHEMA)
    pq.write_table(segments, root / "segments" / "part-0.parquet")
    videos = summarize_videos(segments, EMOTIONS)
    pq.write_table(videos.replace_schema_metadata(SEGMENT_SCHEMA.metadata), root / "videos.parquet")
    statuses = videos["status"].to_pylist()
    counts = {"inputs": 4, "videos": 4, "videos_ok": statuses.count("ok"),
              "videos_failed": 4 - statuses.count("ok"), "segments": segments.num_rows,
              "segments_ok": segments["status"].to_pylist().count("ok"), "model_id": MODEL_ID}
    (root / "_SUCCESS").write_text(json.dumps(counts))
    return counts


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
        expected = PNG_PX.get(name, charts.TIMELINE_PX)
        assert png_size(data) == (int(width), int(height)) == expected, name
        with Image.open(out / name) as image:
            assert image.size == expected
            assert np.asarray(image.convert("L"), dtype=float).std() > 5, f"{name} looks blank"
    assert sorted(p.name for p in out.glob("*.png")) == sorted(n for n, _, _ in names)
    return [n for n, _, _ in names]


@pytest.fixture(scope="module")
def scores_and_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    counts = write_scores(root / "scores")
    write_run(root / "run")
    index = write_report(root / "out", scores_uri=str(root / "scores"), run_uri=str(root / "run"))
    return root, counts, index


def test_report_page_and_charts(scores_and_run):
    root, counts, index = scores_and_run
    page = index.read_text()
    names = check_pngs(index.parent, page)
    # one timeline per video with an ok segment, plus the four summary charts that apply
    assert sorted(names) == sorted(["dominant_emotions.png", "statuses.png", "learning_curves.png",
                                    "timeline_00.png", "timeline_01.png", "timeline_02.png"])
    for name in VIDEOS:
        assert f"{root}/scores/videos/{name}" in page
    assert "invalid_container" in page and "bad_segment" in page
    assert html.escape(BAD_ERROR) in page and BAD_ERROR not in page
    for key in ("videos_ok", "videos_failed", "segments", "segments_ok"):
        assert f"<td>{key.replace('_', ' ')}</td><td>{counts[key]}</td>" in page
    assert counts == {**counts, "videos_ok": 3, "videos_failed": 1, "segments": 16, "segments_ok": 14}
    assert MODEL_ID in page and "No <code>_SUCCESS</code>" not in page
    # the run: 4 epochs, the best one (2) highlighted in the per-epoch table
    assert "4 epochs; best epoch 2" in page
    assert "<tr class=best><td>2</td>" in page


def test_timeline_bars_for_a_single_segment(scores_and_run):
    root, _, index = scores_and_run
    page = index.read_text()
    # sorted by name: single, talk_a, talk_b; the single-segment video is drawn as coloured bars
    assert re.search(r'timeline_00.png"[^<]*<figcaption>[^<]*single.mp4', page)
    with Image.open(index.parent / "timeline_00.png") as image:
        colours = {c for _, c in image.convert("RGB").getcolors(1 << 20)}
    tab10 = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75)]
    assert set(tab10) <= colours


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
    assert len(check_pngs(tmp_path / "out", page)) == 5  # 3 timelines, dominant emotions, statuses
    assert "<td>segments ok</td><td>14</td>" in page and html.escape(BAD_ERROR) in page
