"""`fv2es score` with speech to text: uncaptioned speech is cut at the utterances and transcribed,
captions win in auto mode, windows get every word they overlap, silence gets no words."""

import dataclasses
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fv2es.score.job import ScoreRequest, run_score

CAPTION = "this caption is not what was said"


def srt(*cues):
    def stamp(t):
        return f"00:00:{int(t):02d},{round((t - int(t)) * 1000):03d}"
    return "".join(f"{i}\n{stamp(s)} --> {stamp(e)}\n{text}\n\n" for i, (s, e, text) in enumerate(cues, 1))


@pytest.fixture(scope="module")
def folders(tmp_path_factory, speech):
    auto = tmp_path_factory.mktemp("auto")
    speech.video(auto / "two.mp4", speech.wav("two.wav"))
    shutil.copy(auto / "two.mp4", auto / "captioned.mp4")
    (auto / "captioned.srt").write_text(srt((0.5, 2.3, CAPTION)))
    speech.video(auto / "quiet.mp4", speech.noise(2.0))
    window = tmp_path_factory.mktemp("window")
    speech.video(window / "one.mp4", speech.wav("one.wav"))
    shutil.copy(window / "one.mp4", window / "one_captioned.mp4")
    (window / "one_captioned.srt").write_text(srt((0.0, 8.8, speech.sentences("one.wav")[0]["text"])))
    return auto, window


def score(cfg, folder, checkpoint, out):
    run_score(cfg, ScoreRequest(str(folder), str(out), checkpoint))
    return by_video(pq.read_table(str(out / "segments")).to_pylist())


def by_video(rows: list[dict]) -> dict[str, list[dict]]:
    """Segment rows by video name, each video's in segment order."""
    videos: dict[str, list[dict]] = {}
    for r in sorted(rows, key=lambda r: (r["video_uri"], r["segment_index"])):
        videos.setdefault(r["video_uri"].rsplit("/", 1)[1], []).append(r)
    return videos


@pytest.mark.slow
def test_auto_cuts_uncaptioned_speech_at_the_utterances(ray_cluster, folders, checkpoint, tiny_cfg, speech,
                                                         tmp_path):
    auto, _ = folders
    videos = score(tiny_cfg, auto, checkpoint, tmp_path / "out")

    two = videos["two.mp4"]
    assert [r["segment_index"] for r in two] == [0, 1] and {r["segment_count"] for r in two} == {2}
    for row, sentence in zip(two, speech.sentences("two.wav")):
        assert abs(row["start"] - sentence["start"]) < 0.5 and abs(row["end"] - sentence["end"]) < 0.5
        assert row["text_source"] == "asr" and row["language"] == "en" and 0.5 < row["asr_confidence"] <= 1.0
        assert speech.wer(sentence["text"], row["text"]) <= 0.35, row["text"]
        assert row["status"] == "ok" and row["top_emotion"] is not None and row["asr_ms"] > 0
        assert row["faces_found"] >= 2 and row["piece_count"] > 0

    (captioned,) = videos["captioned.mp4"]  # one cue: one segment, the caption's words, no transcription
    assert (captioned["text"], captioned["text_source"], captioned["asr_ms"]) == (CAPTION, "caption", 0.0)
    assert (captioned["start"], captioned["end"]) == (0.5, 2.3)

    (quiet,) = videos["quiet.mp4"]
    assert (quiet["text"], quiet["text_source"], quiet["language"], quiet["status"]) == ("", "none", None, "ok")
    assert quiet["end"] == pytest.approx(2.0, abs=0.05) and quiet["top_emotion"] is not None


def transcribed_locally(cfg, folder):
    """The scoring job's decode and speech-to-text stages over ``folder``, run in this process
    (:func:`fv2es.pipeline.local.run_stages`) and numbered as the job numbers them: rows by video."""
    from fv2es.pipeline.dataset import media_stages
    from fv2es.pipeline.local import local_job, run_stages
    from fv2es.pipeline.numbering import number_all
    from fv2es.pipeline.plan import iter_jobs

    stages = [s for s in media_stages(local_job(cfg, cfg.segments)) if s.name in ("decode", "transcribe")]
    rows = number_all(run_stages(pa.concat_tables(iter_jobs(str(folder), cfg.score)), stages)).to_pylist()
    return by_video(rows)


def test_window_mode_gives_every_window_over_speech_its_words(folders, tiny_cfg, speech):
    """Row level, in this process (the test above runs the whole job on Ray)."""
    _, window = folders
    cfg = dataclasses.replace(tiny_cfg, segments=dataclasses.replace(tiny_cfg.segments, mode="window", window_s=2.0))
    videos = transcribed_locally(cfg, window)
    spoken = speech.sentences("one.wav")[0]
    for name, source in (("one.mp4", "asr"), ("one_captioned.mp4", "caption")):
        rows = videos[name]
        assert len(rows) == 5  # 8.84 s of one continuous sentence
        assert all(r["text"] and r["text_source"] == source for r in rows), [(r["text"], r["text_source"]) for r in rows]
    assert all(r["text"] == spoken["text"] for r in videos["one_captioned.mp4"])
    heard = " ".join(r["text"] for r in videos["one.mp4"]).lower()
    assert "weather" in heard and "children" in heard and "hills" in heard
