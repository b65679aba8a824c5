import importlib.util
import os
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
    names = ("demo", "preprocess", "train", "evaluate", "score", "report", "demo-corpus", "model", "import-seed")
    for name in names:
        assert name in out
    assert set(COMMANDS) == set(names)


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


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fv2es.cli", *args], capture_output=True, text=True, timeout=300)


def test_a_mistyped_flag_is_named_not_reported_as_a_missing_required_one():
    proc = run_cli("score", "--inptu", "x", "--output", "o", "--checkpoint", "c.safetensors")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "fv2es score: error: unknown option --inptu (did you mean --input?)")
    assert "Traceback" not in proc.stderr


def test_flag_abbreviations_are_refused():
    proc = run_cli("train", "--epoch", "3")
    assert proc.returncode == 2
    assert "unknown option --epoch (did you mean --epochs?)" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_missing_checkpoint_is_one_line_exit_2(tmp_path):
    (tmp_path / "in").mkdir()
    proc = run_cli("evaluate", "--checkpoint", str(tmp_path / "nope.safetensors"), "--data", str(tmp_path / "in"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"fv2es evaluate: not found: {tmp_path / 'nope.safetensors'}"] \
        or proc.stderr.strip().splitlines() == [f"fv2es evaluate: no such file or directory: {tmp_path / 'nope.safetensors'}"]


def test_user_errors_lose_the_credentials_of_the_uris_they_quote(tmp_path):
    from fv2es.config import load_config
    from fv2es.models import create_model, save_checkpoint

    checkpoint = str(tmp_path / "tiny.safetensors")
    save_checkpoint(checkpoint, create_model(load_config(None, ["model.preset=fv2es_tiny"]).model))
    secret_input = "memory://AKIAEXAMPLE:hunter2@bucket/videos/?X-Amz-Signature=deadbeef"
    proc = run_cli("score", "--input", secret_input, "--output", str(tmp_path / "out"),
                   "--checkpoint", checkpoint, "asr.mode=never")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("fv2es score: no videos under 'memory://bucket/videos/' ")
    for secret in ("AKIAEXAMPLE", "hunter2", "deadbeef", "Traceback"):
        assert secret not in proc.stderr + proc.stdout


def unwritable_folder(tmp_path) -> tuple[Path, str]:
    """A folder this user can neither create nor write in, and the system's reason (root writes
    anywhere on disk, but not in sysfs)."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        path = locked / "out"
    else:
        path = Path("/sys/fv2es-unwritable-test")
    try:
        os.makedirs(path)
    except OSError as exc:
        return path, exc.strerror
    os.rmdir(path)
    pytest.skip("no unwritable folder on this machine")


def test_an_unwritable_report_output_is_one_line_exit_2_before_any_work(tmp_path):
    out, why = unwritable_folder(tmp_path)
    # the scores do not exist either: the output is checked first
    proc = run_cli("report", "--scores", str(tmp_path / "no-scores"), "--output", str(out))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"fv2es report: output {out} cannot be written ({why}); choose an output folder you can write to"]
    assert "Traceback" not in proc.stderr + proc.stdout


def test_an_unwritable_demo_workdir_is_one_line_exit_2_before_any_work(tmp_path):
    work, why = unwritable_folder(tmp_path)
    proc = run_cli("demo", "--workdir", str(work))
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        f"fv2es demo: workdir {work} cannot be written ({why}); choose a --workdir you can write to"]
    assert proc.stdout == ""  # nothing started: no step printed


def test_verbose_is_a_global_flag_before_or_after_the_command():
    from fv2es.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["--verbose", "demo"]).verbose
    assert parser.parse_args(["demo", "--verbose"]).verbose
    assert not parser.parse_args(["demo"]).verbose
