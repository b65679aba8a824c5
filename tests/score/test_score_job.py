import dataclasses
import json
import logging
import shutil

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from fv2es.compute import resolve_precision
from fv2es.score.job import ScoreRequest, run_score, segment_columns

EMOTIONS = ["ang", "exc", "fru", "hap", "neu", "sad"]
PROBS = [f"prob_{e}" for e in EMOTIONS]


def with_bad_inputs(demo_corpus, tmp_path):
    """The demo clips plus the bad files an archive really has."""
    root = tmp_path / "in"
    shutil.copytree(demo_corpus, root)
    (root / "zero.mp4").write_bytes(b"")
    (root / "random.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    clip = (root / "clip_00000.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(clip[: len(clip) // 2])
    (root / "notes.txt").write_text("not a video")
    return root


def read_outputs(out):
    segments = pq.read_table(str(out / "segments"))
    videos = pq.read_table(str(out / "videos.parquet"))
    return segments, videos, json.loads((out / "_SUCCESS").read_text())


@pytest.mark.slow
def test_scores_a_local_folder_with_bad_files_one_row_each_then_reruns(ray_cluster, demo_corpus, checkpoint,
                                                                       no_asr_cfg, tmp_path, caplog):
    """A folder with the bad files an archive has: one row each. Then the same command again: a
    complete output is a no-op, and new inputs are added beside the first run's parts."""
    root = with_bad_inputs(demo_corpus, tmp_path)
    out = tmp_path / "out"
    req = ScoreRequest(str(root), str(out), checkpoint)
    with caplog.at_level(logging.INFO, logger="fv2es"):
        counts = run_score(no_asr_cfg, req)
    segments, videos, success = read_outputs(out)

    assert counts == success
    assert (success["inputs"], success["videos"], success["videos_ok"], success["videos_failed"]) == (9, 9, 6, 3)
    assert segments.column_names == segment_columns(EMOTIONS)
    assert segments.num_rows == 9 and videos.num_rows == 9
    rows = {r["video_uri"].rsplit("/", 1)[1]: r for r in segments.to_pylist()}
    assert rows["zero.mp4"]["status"] == "invalid_container" and "zero-byte" in rows["zero.mp4"]["error"]
    assert rows["random.mp4"]["status"] == "invalid_container"
    assert rows["truncated.mp4"]["status"] in ("invalid_container", "decode_error")
    for name in ("zero.mp4", "random.mp4", "truncated.mp4"):
        assert all(rows[name][p] is None for p in PROBS) and rows[name]["top_emotion"] is None
    manifest = {json.loads(line)["id"]: json.loads(line) for line in (root / "manifest.jsonl").read_text().splitlines()}
    for vid, expected in manifest.items():
        row = rows[f"{vid}.mp4"]
        assert row["status"] == "ok" and row["error"] == ""
        assert row["text"] == expected["text"]
        assert (row["text_source"], row["language"], row["asr_confidence"]) == ("caption", None, None)
        assert row["end"] == pytest.approx(expected["end"], abs=0.05)
        assert row["frames_sampled"] >= 3 and row["faces_found"] >= 2 and row["piece_count"] >= 4
        probs = [row[p] for p in PROBS]
        assert all(0.0 <= p <= 1.0 for p in probs)
        assert row["top_emotion"] == EMOTIONS[int(np.argmax(probs))]
        assert row["predicted"] == [e for e, p in zip(EMOTIONS, probs) if p >= 0.5]
        assert row["decode_ms"] > 0 and row["face_ms"] > 0 and row["model_ms"] > 0
    meta = segments.schema.metadata
    assert json.loads(meta[b"fv2es.emotions"]) == EMOTIONS
    assert meta[b"fv2es.model_id"].decode() == success["model_id"]
    assert b"fv2es.version" in meta and b"fv2es.config" in meta
    assert meta[b"fv2es.precision"].decode() == resolve_precision("auto", "cpu")  # score.precision's default
    text = caplog.text
    assert "inputs 9 | ok 6 | failed 3" in text and "video-s per wall second" in text
    # Sized from the 2-CPU cluster, logged once: one model actor with a CPU and a thread per core.
    assert text.count("resources: cluster 2 CPUs") == 1 and "model 1x(1 CPU, 2 threads" in text

    # The same command again: the output is complete, nothing is scored or written.
    parts = sorted((out / "segments").iterdir())
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fv2es"):
        assert run_score(no_asr_cfg, req)["videos"] == 9
    assert "already complete" in caplog.text and sorted((out / "segments").iterdir()) == parts
    # Two new videos (with their captions) in the folder: only they are scored.
    for clip in sorted(demo_corpus.glob("clip_0000[3-4].*")):
        shutil.copy(clip, root / clip.name.replace("clip_", "new_"))
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="fv2es"):
        counts = run_score(no_asr_cfg, req)
    assert "scoring 2 of 11 videos (9 already done)" in caplog.text
    segments, videos, _ = read_outputs(out)
    assert counts["videos"] == 11 and segments.num_rows == 11 and videos.num_rows == 11
    assert len(set(segments.column("video_uri").to_pylist())) == 11
    assert set(parts) < set((out / "segments").iterdir())  # the first run's parts were kept


@pytest.mark.slow
def test_manifest_segments_are_scored_as_given(ray_cluster, demo_corpus, checkpoint, no_asr_cfg, tmp_path):
    cfg = dataclasses.replace(no_asr_cfg, segments=dataclasses.replace(no_asr_cfg.segments, mode="window", window_s=1.0))
    out = tmp_path / "out"
    run_score(cfg, ScoreRequest(str(demo_corpus / "manifest.jsonl"), str(out), checkpoint))
    segments, videos, success = read_outputs(out)
    assert success["videos"] == 6 and success["videos_failed"] == 0
    # The demo manifest gives each clip's start and end: given segments win over the window mode.
    assert sorted(segments.column("utterance_id").to_pylist()) == [f"clip_{i:05d}" for i in range(6)]
    assert all(t for t in segments.column("text").to_pylist())  # the manifest's text on every window
    assert set(segments.column("text_source").to_pylist()) == {"manifest"}
    # The same stage list run in this process (fv2es.pipeline.local, what the row-level tests here
    # use) gives the rows this job wrote.
    local = scored_locally(cfg, str(demo_corpus / "manifest.jsonl"), checkpoint)
    columns = [c for c in segments.column_names if c in local.column_names and not c.endswith("_ms")]
    assert len(columns) > 20

    def rows(table):
        return sorted(table.select(columns).to_pylist(), key=lambda r: (r["video_uri"], r["segment_index"]))

    assert close(rows(local), rows(segments)), columns


def close(a, b) -> bool:
    """``a == b``, floats (also inside lists and dicts) to 1e-5: a model on another thread count."""
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-5, abs=1e-6)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    return a == b


def scored_locally(cfg, input_uri, checkpoint):
    """The scoring job's stage list (the media stages, then the model) over ``input_uri``, run in
    this process (:func:`fv2es.pipeline.local.run_stages`) and numbered as the job numbers it."""
    from fv2es.pipeline.dataset import media_stages
    from fv2es.pipeline.local import local_job, run_stages
    from fv2es.pipeline.numbering import number_all
    from fv2es.pipeline.plan import iter_jobs
    from fv2es.score.model_stage import ModelStage

    job = local_job(cfg, cfg.segments, model=True)
    jobs = pa.concat_tables(iter_jobs(input_uri, cfg.score))
    return number_all(run_stages(jobs, [*media_stages(job), ModelStage.spec(job, checkpoint, None)]))


def test_window_mode_on_a_folder_splits_and_weights_by_duration(demo_corpus, checkpoint, no_asr_cfg):
    """Row level, in this process (:func:`scored_locally`), summarised as the job summarises its
    output (the folder and manifest tests above run the whole job on Ray)."""
    from fv2es.score.summary import summarize_videos

    cfg = dataclasses.replace(no_asr_cfg, segments=dataclasses.replace(no_asr_cfg.segments, mode="window", window_s=1.0))
    segments = scored_locally(cfg, str(demo_corpus), checkpoint)
    videos = summarize_videos(segments, EMOTIONS)
    seg = segments.to_pandas()
    assert seg.groupby("video_uri").size().tolist() == seg.groupby("video_uri")["segment_count"].first().tolist()
    assert not seg.duplicated(["video_uri", "segment_index"]).any()
    assert (seg.groupby("video_uri").size() >= 2).all()
    for video in videos.to_pylist():
        part = seg[seg.video_uri == video["video_uri"]]
        weights = (part.end - part.start).to_numpy()
        for p in PROBS:
            assert video[p] == pytest.approx(float(np.average(part[p], weights=weights)))
        assert video["dominant_emotion"] == EMOTIONS[int(np.argmax([video[p] for p in PROBS]))]
        assert video["segments"] == len(part) and video["scored_seconds"] == pytest.approx(weights.sum())
        # One decode pass covers a clip's windows: each is charged by its seconds, not an equal share.
        np.testing.assert_allclose(part.decode_ms.to_numpy() / weights, part.decode_ms.sum() / weights.sum(),
                                   rtol=1e-6)


@pytest.mark.slow
def test_scores_from_and_to_s3(ray_cluster, demo_corpus, checkpoint, no_asr_cfg, s3_endpoint):
    s3 = fsspec.filesystem("s3", **s3_endpoint)
    for clip in sorted(demo_corpus.glob("clip_*")):
        s3.pipe_file(f"data/archive/{clip.name}", clip.read_bytes())
    s3.pipe_file("data/archive/broken.mp4", b"\x00" * 100)
    req = ScoreRequest("s3://data/archive", "s3://data/scores", checkpoint, storage_options=s3_endpoint)
    counts = run_score(no_asr_cfg, req)
    assert (counts["inputs"], counts["videos_ok"], counts["videos_failed"]) == (7, 6, 1)
    with s3.open("data/scores/videos.parquet", "rb") as f:
        videos = pq.read_table(f).to_pylist()
    assert sorted(v["video_uri"] for v in videos) == sorted(
        [f"s3://data/archive/clip_{i:05d}.mp4" for i in range(6)] + ["s3://data/archive/broken.mp4"])
    assert s3.exists("data/scores/_SUCCESS") and not s3.exists("data/scores/_tmp")
    with s3.open("data/scores/_SUCCESS") as f:
        assert json.load(f)["videos"] == 7


def test_cli_errors_are_clear_and_exit_2(tmp_path, checkpoint, capsys):
    from fv2es.cli import main

    assert main(["score", "--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o"),
                 "--checkpoint", checkpoint]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "fake.safetensors").write_bytes(b"12345678")
    assert main(["score", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                 "--checkpoint", str(tmp_path / "fake.safetensors")]) == 2
    assert "not an fv2es checkpoint" in capsys.readouterr().err
    assert main(["score", "--input", str(tmp_path), "--output", str(tmp_path / "o"),
                 "--checkpoint", str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err


def test_a_speech_model_that_cannot_load_fails_the_job_before_any_video_is_read(tmp_path, checkpoint, capsys):
    from fv2es.cli import main

    assert main(["score", "--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o"),
                 "--checkpoint", checkpoint, f"asr.model={tmp_path / 'no-whisper'}"]) == 2
    err = capsys.readouterr().err.strip()
    # One line about the model; the input (which does not exist either) was never looked at.
    assert len(err.splitlines()) == 1 and "asr.model" in err and "no-whisper" in err and "nowhere" not in err
    assert not (tmp_path / "o").exists()
    assert main(["score", "--input", str(tmp_path / "nowhere"), "--output", str(tmp_path / "o"),
                 "--checkpoint", checkpoint, f"asr.model={tmp_path / 'no-whisper'}", "asr.mode=never"]) == 2
    assert "does not exist" in capsys.readouterr().err  # never: the model is not needed, the input is checked


@pytest.mark.parametrize("asr_mode", ["auto", "never"])
def test_decoding_runs_as_tasks_of_its_own(ray_cluster, checkpoint, tiny_cfg, capsys, asr_mode):
    """Ray Data fuses a task stage into the actor stage after it unless their task caps differ;
    fused, every decode ran one at a time inside the single speech-to-text (or face) actor of a
    2-CPU machine. The optimised physical plan must keep decoding a task pool of its own."""
    from fv2es.pipeline.dataset import build_dataset, media_job, media_stages, sized_config
    from fv2es.score.model_stage import ModelStage

    cfg = sized_config(dataclasses.replace(tiny_cfg, asr=dataclasses.replace(tiny_cfg.asr, mode=asr_mode)), model=True)
    jobs = [{"video_uri": f"v{i}.mp4", "segments": "", "audio_uri": "", "audio_channel": -1, "speaker_side": ""}
            for i in range(4)]
    job = media_job(cfg, cfg.segments, None)
    ds = build_dataset(jobs, [*media_stages(job), ModelStage.spec(job, checkpoint, None)])
    capsys.readouterr()
    ds.explain()
    optimized = capsys.readouterr().out.split("Physical Plan (Optimized)")[1]
    assert "TaskPoolMapOperator[MapBatches(Decode)]" in optimized
    # The speaker tasks fuse into the first actor after decoding: speech to text's, or the faces'.
    first_actor = ("MapBatches(Speakers)->MapBatches(Transcribe)" if asr_mode == "auto"
                   else "MapBatches(Speakers)->MapBatches(Spectrogram)->MapBatches(Faces)")
    assert f"ActorPoolMapOperator[{first_actor}]" in optimized
