"""A run that dies part way (no cleanup, embedded Ray included) resumes without duplicates."""

import os
import signal
import subprocess
import sys
import time

import pyarrow.parquet as pq
import pytest

from fv2es.media.democorpus import make_demo_corpus

pytestmark = pytest.mark.slow


def score(inp, out, checkpoint, **popen):
    cmd = [sys.executable, "-m", "fv2es.cli", "score", "--input", str(inp), "--output", str(out),
           "--checkpoint", checkpoint, "model.preset=fv2es_tiny", "score.part_videos=1", "resources.model_batch_size=1",
           "decode.max_side=320",
           "asr.mode=never"]  # what is looked at here is rows and parts, not text: no speech model to start
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("in")
    make_demo_corpus(root, videos=8, seed=5, seconds=(1.0, 1.5))
    return root


def check_complete(out, first_parts):
    table = pq.read_table(str(out / "segments")).to_pandas()
    assert len(table) == 8 and not table.duplicated(["video_uri", "segment_index"]).any()
    assert (table.status == "ok").all()
    assert set(first_parts) <= {p.name for p in (out / "segments").iterdir()}
    assert (out / "_SUCCESS").exists() and not (out / "_tmp").exists()
    assert len(pq.read_table(str(out / "videos.parquet"))) == 8


def test_killed_after_its_first_commit_then_resumes(tmp_path, corpus, checkpoint):
    out = tmp_path / "out"
    first = score(corpus, out, checkpoint, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None and not list((out / "segments").glob("*.parquet")):
        time.sleep(0.02)
    os.killpg(first.pid, signal.SIGKILL)  # the driver, its embedded Ray and its decoders, as the OOM killer would
    first.wait()
    first_parts = sorted(p.name for p in (out / "segments").iterdir())
    done = len(pq.read_table(str(out / "segments")))
    assert len(first_parts) >= 1 and 1 <= done < 8
    assert not (out / "_SUCCESS").exists() and not (out / "videos.parquet").exists()
    assert (out / "_LEASE").exists()  # left behind by the dead run

    rerun = score(corpus, out, checkpoint)
    log = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, log[-3000:]
    assert f"scoring {8 - done} of 8 videos ({done} already done)" in log
    assert "took over the lease" in log and "is gone" in log  # the dead holder's lease, on this host
    check_complete(out, first_parts)
    assert not (out / "_LEASE").exists()


def test_sigkill_at_any_moment_then_resumes(tmp_path, corpus, checkpoint):
    out = tmp_path / "out"
    first = score(corpus, out, checkpoint, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and first.poll() is None and not (out / "segments").exists():
        time.sleep(0.05)
    time.sleep(1.0)  # somewhere in the middle of the run
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    first_parts = sorted(p.name for p in (out / "segments").iterdir()) if (out / "segments").exists() else []

    rerun = score(corpus, out, checkpoint)
    log = rerun.communicate(timeout=600)[0]
    assert rerun.returncode == 0, log[-3000:]
    check_complete(out, first_parts)
