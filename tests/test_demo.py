"""`fv2es demo`, the README's main command: end to end, then a second run that reuses everything."""

import pytest

from fv2es.cli import main

pytestmark = pytest.mark.slow


def test_demo_end_to_end_then_reuses_its_outputs(ray_cluster, tmp_path, capsys):
    work = tmp_path / "demo"
    # asr.mode=never: the demo clips have captions, so speech to text would only start its model and
    # actors for nothing (speech to text on Ray: tests/score/test_speech.py, tests/pipeline/test_preprocess_asr.py).
    assert main(["demo", "--workdir", str(work), "--epochs", "2", "--rows", "6", "asr.mode=never"]) == 0
    captured = capsys.readouterr()
    out = captured.out
    # a short console: one progress line per job (periodic here: not a terminal), no Ray Data bars;
    # the raylet's notices of slow worker starts (more on a busy machine) are Ray's, left out here
    lines = [line for line in (out + captured.err).splitlines() if "(raylet)" not in line]
    assert len(lines) < 40, out + captured.err
    assert "[preprocess] 60/60 utterances, 0 failed, " in out and "[score] 60/60 videos, 0 failed, " in out
    for ray_line in ("logging_progress", "Starting execution", "constructor arguments in the object store"):
        assert ray_line not in out + captured.err
    assert "means nothing on real video" in out
    for path in ("corpus/manifest.jsonl", "shards/metadata.json", "runs/demo/best.safetensors",
                 "scores/_SUCCESS", "scores/videos.parquet", "report/index.html", "report/confusion_test.png"):
        assert (work / path).exists(), path
    assert "inputs 60 | ok 60 | failed 0" in out
    table = out.split("faces\n", 1)[1].splitlines()
    assert len([line for line in table if line.startswith("clip_")]) == 6
    agree = int(out.split("the clip's label for ")[1].split()[0])
    assert agree >= 30  # two epochs of the tiny model already beat chance (10 of 60) by far

    assert main(["demo", "--workdir", str(work), "--epochs", "2", "asr.mode=never"]) == 0
    again = capsys.readouterr().out
    assert again.count("already there") == 3 and "is already complete" in again
