import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fv2es.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def test_console_script_help_lists_every_subcommand():
    exe = shutil.which("fv2es")
    assert exe, "the fv2es console script is not installed"
    out = subprocess.run([exe, "--help"], capture_output=True, text=True, check=True).stdout
    for name in ("demo", "preprocess", "train", "evaluate", "score", "report", "demo-corpus", "model"):
        assert name in out
    assert set(COMMANDS) == {"demo", "preprocess", "train", "evaluate", "score", "report", "demo-corpus", "model"}


def test_model_command_counts_and_times_the_tiny_model(capsys):
    assert main(["model", "--seconds", "2", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "model fv2es_tiny" in out
    assert "2 s -> 4 face frames, 6 spectrogram pieces" in out  # 500 ms frames; 161 mel frames / 32
    probs = [float(p.split("=")[1]) for p in out.split("probabilities: ")[1].split(", ")]
    assert len(probs) == 6 and all(0.0 < p < 1.0 for p in probs)


def test_config_errors_exit_2_with_the_key_named(capsys):
    assert main(["model", "model.trans_dm=3"]) == 2
    assert "unknown config key 'model.trans_dm'" in capsys.readouterr().err


def test_demo_corpus_command_writes_clips_and_manifest(tmp_path, capsys):
    import json

    assert main(["demo-corpus", str(tmp_path / "demo"), "--videos", "6", "--seconds", "1,1.5"]) == 0
    rows = [json.loads(line) for line in (tmp_path / "demo" / "manifest.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and len(list((tmp_path / "demo").rglob("*.mp4"))) == 6
    assert {r["label"] for r in rows} == {"ang", "exc", "fru", "hap", "neu", "sad"}
    assert all(1.0 <= r["end"] - r["start"] <= 1.5 + 1e-6 for r in rows)
    assert "wrote 6 clips" in capsys.readouterr().out


@pytest.mark.parametrize("job", ["preprocess", "train", "evaluate", "score"])
def test_jobs_are_thin_entrypoints_over_the_cli(job, capsys):
    spec = importlib.util.spec_from_file_location(f"job_{job}", ROOT / "jobs" / f"{job}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_info:
        module.main(["--help"])
    assert exit_info.value.code == 0
    assert f"usage: fv2es {job}" in capsys.readouterr().out


def test_python_dash_m_runs_the_cli():
    out = subprocess.run([sys.executable, "-m", "fv2es.cli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.startswith("fv2es ")
