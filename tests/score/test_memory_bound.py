"""The model stage's batch budget (resources.model_batch_pieces / model_batch_frames): segments of
many videos share a forward pass within it, a segment over it runs alone with its encoders in
slices, the scores equal those of one unbounded pass, and scoring long segments keeps the
actor's memory under a ceiling set by the budget, not by the input's length."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pyarrow as pa
import pytest

from fv2es.pipeline.packing import pack
from fv2es.pipeline.timing import apportion
from fv2es.score.model_stage import ModelStage


def segment_rows(sizes, text="so happy to see you"):
    """Face-stage output rows with ``(pieces, frames)`` of random content each; ``None``: a failed row."""
    rng = np.random.default_rng(0)
    rows = []
    for size in sizes:
        pieces, frames = size or (0, 0)
        rows.append({"text": text, "faces": pack(rng.integers(0, 255, (frames, 48, 48, 3), dtype=np.uint8)),
                     "pieces": pack(rng.random((pieces, 4, 32, 32), dtype=np.float32)), "piece_count": pieces,
                     "frames_sampled": frames, "status": "ok" if size else "decode_error",
                     "error": None if size else "broken"})
    return rows


def test_budget_cuts_forward_passes_and_scores_the_same(checkpoint):
    sizes = [(3, 4), (5, 4), (4, 6), (25, 30), None, (0, 0), (2, 2)]
    rows = segment_rows(sizes)
    table = pa.Table.from_pylist(rows)
    budgeted = ModelStage(checkpoint, batch_size=16, max_pieces=10, max_frames=12)
    unbounded = ModelStage(checkpoint, batch_size=16, max_pieces=10**6, max_frames=10**6)

    todo = [0, 1, 2, 3, 5, 6]  # the failed row is not scored
    # (3,4)+(5,4) fit; (4,6) would make 12 pieces; (25,30) is over the budget alone; the
    # text-only segment and (2,2) share the last pass.
    assert budgeted.forward_batches(rows, todo) == [[0, 1], [2], [3], [5, 6]]
    assert unbounded.forward_batches(rows, todo) == [todo]
    assert ModelStage.forward_batches(budgeted, rows, []) == []

    got, want = budgeted(table), unbounded(table)
    for column in got.column_names:
        if column.startswith("prob_"):
            a = np.array(got.column(column).to_pylist(), dtype=float)
            b = np.array(want.column(column).to_pylist(), dtype=float)
            assert np.isnan(a[4]) and np.isnan(b[4])
            np.testing.assert_allclose(np.delete(a, 4), np.delete(b, 4), atol=1e-5)
    assert got.column("status").to_pylist() == ["ok"] * 4 + ["decode_error", "ok", "ok"]
    ms = np.array(got.column("model_ms").to_pylist())
    assert ms[4] == 0 and (np.delete(ms, 4) > 0).all()
    # One pass's time is split by content: (3, 4) -> 3 + 4 + 1 = 8 parts, (5, 4) -> 10 parts.
    assert ms[1] / ms[0] == pytest.approx(10 / 8)
    assert ms[6] / ms[5] == pytest.approx(5 / 1)


def test_apportion():
    assert apportion(10.0, [1, 3]).tolist() == [2.5, 7.5]
    assert apportion(9.0, [0, 0, 0]).tolist() == [3.0, 3.0, 3.0]
    assert apportion(5.0, []).tolist() == []


PROBE = """
import sys
import numpy as np, pyarrow as pa
sys.path.insert(0, sys.argv[2])
from test_memory_bound import segment_rows
from fv2es.score.model_stage import ModelStage

def peak_mib():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1]) / 1024

# Four 120 s segments (segments.max_segment_s): 300 spectrogram pieces and 240 frames each.
table = pa.Table.from_pylist(segment_rows([(300, 240)] * 4))
stage = ModelStage(sys.argv[1], threads=1, batch_size=16, max_pieces=64, max_frames=256)
before = peak_mib()
out = stage(table)
assert out.column("prob_hap").null_count == 0 and set(out.column("status").to_pylist()) == {"ok"}
print(peak_mib() - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_long_segments_stay_under_the_memory_ceiling(checkpoint, tmp_path):
    """8 minutes of media in one model call: with the default CPU budget (64 pieces, 256 frames)
    the stage's peak RSS grows by well under 400 MiB (one unbounded pass of the same rows: ~1.3 GB)."""
    from pathlib import Path

    proc = subprocess.run([sys.executable, "-c", PROBE, checkpoint, str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    growth_mib = float(proc.stdout.split()[-1])
    assert 0 <= growth_mib < 400, growth_mib
