"""The report at any size (fv2es.report): timelines of a bounded selection (by name, or the top
by a column), a capped videos table that says how many there are and where all of them are, and
whole-output figures (status counts, per-modality means) read without holding every segment."""

import html
import re

import numpy as np
import pyarrow as pa
import pytest

from fv2es import report
from fv2es.cli import main as cli_main
from fv2es.errors import InputError
from fv2es.score.output import SUMMARIES, ScoreOutput
from fv2es.score.summary import summarize_jobs

EMOTIONS = ["hap", "sad"]
VIDEOS = report.TABLE_ROWS + 200


@pytest.fixture(scope="module")
def scores(tmp_path_factory):
    """A complete output of VIDEOS one-segment videos in parts of 100 (every 50th failed), with
    per-modality columns; prob_sad rises with the video's number."""
    root = tmp_path_factory.mktemp("big") / "scores"
    output = ScoreOutput(str(root), metadata={"fv2es.emotions": '["hap", "sad"]', "fv2es.model_id": "m"},
                         beside={SUMMARIES: summarize_jobs})
    output.start()
    sad = np.linspace(0.01, 0.99, VIDEOS)
    for first in range(0, VIDEOS, 100):
        rows = []
        for v in range(first, min(VIDEOS, first + 100)):
            ok = v % 50 != 7
            rows.append({
                "video_uri": f"{root}/videos/v{v:05d}.mp4", "job_id": f"j{v}", "speaker_side": None,
                "segment_index": 0, "utterance_id": None, "start": 0.0, "end": 2.0, "video_duration_s": 2.0,
                "text": f"said {v}", "prob_hap": 1 - sad[v] if ok else None, "prob_sad": sad[v] if ok else None,
                "prob_text_hap": 0.25 if ok else None, "prob_text_sad": 0.75 if ok else None,
                "top_emotion": "sad" if ok else None, "model_id": "m", "status": "ok" if ok else "unreadable",
                "error": "" if ok else "unreadable: boom"})
        output.write_part(pa.Table.from_pylist(rows))
    videos = output.videos(EMOTIONS)
    output.finish(videos, {"videos": VIDEOS})
    return root


def test_the_top_videos_by_a_column_are_drawn_and_the_table_is_capped(scores, tmp_path):
    index = report.write_report(tmp_path / "out", scores_uri=str(scores), sort_by="prob_sad", top=3)
    page = index.read_text()
    drawn = [html.unescape(v) for v in re.findall(r'<figure class=timeline id="tl-\d+" data-video="([^"]+)"', page)]
    assert drawn == [f"{scores}/videos/v{v:05d}.mp4" for v in (VIDEOS - 1, VIDEOS - 2, VIDEOS - 3)]
    table = re.search(r"<table class=sortable id=videos.*?</table>", page, re.S).group(0)
    assert table.count("<tr>") == report.TABLE_ROWS + 1  # the head and the capped rows
    assert f"The first {report.TABLE_ROWS} of {VIDEOS} videos, largest prob_sad first" in page
    assert html.escape(f"{scores}/videos.parquet") in page
    # whole-output figures: every video and segment counted, the modality means over the scored videos
    failed = len([v for v in range(VIDEOS) if v % 50 == 7])
    assert f"<tr><td>unreadable</td><td>{failed}</td><td>{failed}</td></tr>" in page
    assert "<th>fused</th><th>text</th>" in page and "<td>0.75</td>" in page
    assert len(page.encode()) < 600_000  # ~0.3 MB for any number of videos


def test_by_name_by_default_and_a_bad_column_is_a_clear_error(scores, tmp_path):
    page = report.write_report(tmp_path / "out", scores_uri=str(scores)).read_text()
    drawn = re.findall(r'<figure class=timeline id="tl-\d+" data-video="[^"]+/(v\d+\.mp4)"', page)
    assert drawn == [f"v{v:05d}.mp4" for v in range(report.MAX_TIMELINES + 1) if v % 50 != 7][:report.MAX_TIMELINES]
    with pytest.raises(InputError, match="--sort-by 'prob_nope': not a column of videos.parquet"):
        report.write_report(tmp_path / "out2", scores_uri=str(scores), sort_by="prob_nope")


def test_command_flags(scores, tmp_path, capsys):
    assert cli_main(["report", "--scores", str(scores), "--sort-by", "prob_hap", "--top", "2",
                     "-o", str(tmp_path / "cli")]) == 0
    page = (tmp_path / "cli" / "index.html").read_text()
    assert len(re.findall(r"<figure class=timeline", page)) == 2 and "largest prob_hap first" in page
    assert cli_main(["report", "--run", str(tmp_path), "--top", "2", "-o", str(tmp_path / "x")]) == 2
    assert "--top needs --scores" in capsys.readouterr().err
