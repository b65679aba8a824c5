"""Failures a user meets before any work (issues 13 and 14): one line on stderr, exit 2, nothing
written, no bucket created, no Ray started. Run through ``fv2es.cli.main`` in this process (a
subprocess would cost a torch import per case); the CLI's one-line contract is the same."""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import fsspec
import pytest

from fv2es.cli import main
from fv2es.score.lease import OutputLease


def score(capsys, tmp_path, checkpoint, *extra, output=None):
    """Run ``fv2es score`` on an empty input folder; returns (exit code, stderr lines)."""
    inp = tmp_path / "in"
    inp.mkdir(exist_ok=True)
    (inp / "a.mp4").write_bytes(b"")  # never read: every failure here comes first
    code = main(["score", "--input", str(inp), "--output", output or str(tmp_path / "out"), "--checkpoint", checkpoint,
                 *extra])
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def no_aws_env(monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def s3_flags(s3_endpoint):
    return ["--endpoint-url", s3_endpoint["client_kwargs"]["endpoint_url"], "--storage-option",
            "skip_instance_cache=true"]


def test_s3_without_credentials_or_bucket(capsys, tmp_path, checkpoint, s3_endpoint, no_aws_env, monkeypatch):
    code, err = score(capsys, tmp_path, checkpoint, *s3_flags(s3_endpoint), output="s3://data/out")
    assert code == 2 and err == ["fv2es score: output s3://data/out: no S3 credentials found; set AWS_ACCESS_KEY_ID "
                                 "and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or run with an instance role)"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    code, err = score(capsys, tmp_path, checkpoint, *s3_flags(s3_endpoint), output="s3://scores-typo/run1")
    assert code == 2 and err == ["fv2es score: output s3://scores-typo/run1: bucket 'scores-typo' does not exist "
                                 "(fv2es never creates buckets: create it, or fix the name)"]
    assert not fsspec.filesystem("s3", **s3_endpoint).exists("scores-typo")


@pytest.fixture
def strict_s3():
    """A second moto server that checks credentials (none are known to it), in its own process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = (f"from moto.server import ThreadedMotoServer; import time; "
            f"ThreadedMotoServer(ip_address='127.0.0.1', port={port}, verbose=False).start(); time.sleep(600)")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            break
        except urllib.error.HTTPError:  # it answers
            break
        except OSError:
            time.sleep(0.2)
    yield endpoint
    proc.kill()
    proc.wait()


def test_s3_with_wrong_credentials(capsys, tmp_path, checkpoint, strict_s3, no_aws_env, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    code, err = score(capsys, tmp_path, checkpoint, "--endpoint-url", strict_s3, output="s3://data/out")
    assert code == 2 and err == ["fv2es score: output s3://data/out: the S3 access key is not known to the store "
                                 "(wrong credentials)"]


def test_an_output_that_cannot_be_written(capsys, tmp_path, checkpoint):
    (tmp_path / "file").write_text("a file, not a folder")
    code, err = score(capsys, tmp_path, checkpoint, output=str(tmp_path / "file" / "out"))
    assert code == 2 and len(err) == 1
    assert err[0].startswith(f"fv2es score: output {tmp_path / 'file' / 'out'} cannot be written (")
    assert err[0].endswith("choose an output folder you can write to")
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        code, err = score(capsys, tmp_path, checkpoint, output=str(locked / "out"))
        assert code == 2 and "cannot be written (Permission denied)" in err[0]


def test_an_address_where_no_ray_answers_fails_fast(capsys, tmp_path, checkpoint):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the socket is
    started = time.monotonic()
    code, err = score(capsys, tmp_path, checkpoint, "--address", f"127.0.0.1:{port}")
    assert time.monotonic() - started < 30
    assert code == 2 and err == [f"fv2es score: no Ray cluster answers at 127.0.0.1:{port} (--address): connection "
                                 f"refused; start the cluster, fix the address, or leave it out for an embedded "
                                 f"local Ray"]
    assert not (tmp_path / "out").exists()


def test_a_second_run_on_a_leased_output_fails_at_once_naming_the_holder(capsys, tmp_path, checkpoint):
    out = tmp_path / "out"
    fs, root = fsspec.core.url_to_fs(str(out))
    with OutputLease(fs, root, str(out)) as holder:
        (out / "_tmp").mkdir()
        (out / "_tmp" / "part-of-the-holder.parquet").write_bytes(b"in progress")
        code, err = score(capsys, tmp_path, checkpoint, "asr.mode=never")
        assert code == 2 and len(err) == 1
        assert err[0].startswith(f"fv2es score: output {out} is in use by run {holder.holder} on host "
                                 f"{socket.gethostname()} (pid {os.getpid()}, started ")
        assert (out / "_tmp" / "part-of-the-holder.parquet").exists()  # the holder's work is left alone
