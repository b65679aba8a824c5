"""The scoring output's job index (fv2es.score.output.ScoreOutput.job_index): a rerun, an added
batch of videos and --retry-failed read job ids and per-job sums, not every segment; the
per-video table made from the sums equals the one made from the segment rows. No Ray."""

import pyarrow as pa
import pytest

from fv2es.score.output import JOBS, SUMMARIES, ScoreOutput
from fv2es.score.summary import summarize_jobs, summarize_videos

EMOTIONS = ["hap", "sad"]


def segments(jobs: dict[tuple[str, str], str], n: int = 3, prob: float = 0.3) -> pa.Table:
    """``n`` segments of 1 s for each (video, side) job, all with ``status`` (its value)."""
    return pa.Table.from_pylist([
        {"video_uri": video, "speaker_side": side or None, "job_id": f"{video}|{side}", "segment_index": i,
         "start": float(i), "end": float(i + 1), "video_duration_s": float(n), "prob_hap": prob + 0.1 * i,
         "prob_sad": 1 - prob - 0.1 * i, "status": status, "error": "" if status == "ok" else f"{status}: boom",
         "model_id": "m"}
        for (video, side), status in jobs.items() for i in range(n)])


@pytest.fixture
def output_of(tmp_path):
    runs = iter(range(1, 100))

    def make(summaries: bool = True):
        output = ScoreOutput(str(tmp_path / "out"), backoff_s=0.0,
                             beside={SUMMARIES: summarize_jobs} if summaries else None)
        output.run_id = f"{output.run_id[:15]}-run{next(runs):02d}"  # runs sort as started
        return output

    return make


def finished(output: ScoreOutput) -> pa.Table:
    output.compact()
    videos = output.videos(EMOTIONS)
    output.finish(videos, {"videos": videos.num_rows})
    return videos


def reads(output: ScoreOutput, monkeypatch) -> list[str]:
    """The files ``output`` reads from now on (their folder and name)."""
    seen, read = [], output._read

    def counting(path, columns=None):
        seen.append("/".join(path.split("/")[-2:]))
        return read(path, columns)

    monkeypatch.setattr(output, "_read", counting)
    return seen


def test_a_rerun_and_added_videos_read_the_index_not_the_segments(output_of, monkeypatch):
    first = output_of()
    first.start()
    first.write_part(segments({("a", "left"): "ok", ("b", ""): "ok"}))
    first.write_part(segments({("a", "right"): "unreadable", ("c", ""): "ok"}))  # a's other job, in another part
    videos = finished(first)
    assert videos.equals(summarize_videos(first.read_segments(), EMOTIONS))
    assert videos.column("video_uri").to_pylist() == ["a", "b", "c"] and videos.column("segments")[0].as_py() == 6

    rerun = output_of()
    seen = reads(rerun, monkeypatch)
    monkeypatch.setattr(rerun, "_read_part", lambda *a, **k: pytest.fail("a segment file was read"))
    assert rerun.done_jobs() == {"a|left", "a|right", "b|", "c|"}
    assert rerun.videos(EMOTIONS).equals(videos)
    assert seen == [f"out/{JOBS}.parquet"]  # one file for the whole output

    rerun.start()
    rerun.write_part(segments({("d", ""): "ok"}))  # ten new videos would be one more part like this
    seen.clear()
    rerun._index = None
    added = rerun.videos(EMOTIONS)
    assert seen == [f"out/{JOBS}.parquet", f"{SUMMARIES}/{rerun.part_files()[-1].rsplit('/', 1)[-1]}"]
    assert added.column("video_uri").to_pylist() == ["a", "b", "c", "d"]
    monkeypatch.undo()
    assert added.equals(summarize_videos(rerun.read_segments(), EMOTIONS))


def test_retry_failed_reads_only_the_parts_with_a_failed_job(output_of, monkeypatch):
    output = output_of()
    output.start()
    output.write_part(segments({("a", ""): "ok"}))
    failed_part = output.write_part(segments({("b", ""): "unreadable", ("c", ""): "ok"}))
    finished(output)

    retry = output_of()
    parts_read = []
    read_part = retry._read_part
    monkeypatch.setattr(retry, "_read_part", lambda p, c=None: parts_read.append(p) or read_part(p, c))
    transient = lambda status, error: status == "unreadable"  # noqa: E731
    assert retry.done_jobs(redo=transient) == {"a|", "c|"} and parts_read == [failed_part]

    retry.start()
    retry.write_part(segments({("b", ""): "ok"}, prob=0.9))  # b re-scored, ok now
    videos = finished(retry)
    assert retry.part_files()[0].endswith(output.part_files()[0].rsplit("/", 1)[-1])  # a's part untouched
    assert len(retry.part_files()) == 3  # the part with b's old rows rewritten with c's only
    b = videos.filter(pa.compute.equal(videos.column("video_uri"), "b")).to_pylist()[0]
    assert (b["status"], b["segments"], b["prob_hap"]) == ("ok", 3, pytest.approx(1.0))
    assert videos.sort_by("video_uri").equals(summarize_videos(retry.read_segments(), EMOTIONS).sort_by("video_uri"))


def test_an_output_written_before_summaries_is_summarised_from_its_segments_once(output_of, monkeypatch):
    old = output_of(summaries=False)
    old.start()
    old.write_part(segments({("a", ""): "ok", ("b", ""): "no_audio"}))
    assert old.done_jobs() == {"a|", "b|"}
    with pytest.raises(ValueError, match="parts without a summary"):
        old.videos(EMOTIONS)

    upgraded = output_of()
    videos = finished(upgraded)  # reads the old part once, keeps its sums in the index
    assert videos.equals(summarize_videos(old.read_segments(), EMOTIONS))
    again = output_of()
    monkeypatch.setattr(again, "_read_part", lambda *a, **k: pytest.fail("a segment file was read"))
    assert again.videos(EMOTIONS).equals(videos)
