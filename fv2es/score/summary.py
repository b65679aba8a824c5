"""The per-video summary of a scoring output's segment rows (``videos.parquet``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fv2es.emotions import prob_column
from fv2es.failures import OK


def spans(table: pa.Table) -> np.ndarray:
    """Each segment row's length in seconds (``end - start``; NaN where either is missing)."""
    start = table.column("start").to_numpy(zero_copy_only=False).astype(float)
    end = table.column("end").to_numpy(zero_copy_only=False).astype(float)
    return end - start


def summarize_videos(segments: pa.Table, emotions: list[str]) -> pa.Table:
    """One row per video: duration-weighted mean probabilities over its ok segments, the
    dominant emotion, segment counts and the first failure."""
    prob_cols = [prob_column(e) for e in emotions]
    rows = []
    for uri in dict.fromkeys(segments.column("video_uri").to_pylist()):
        seg = segments.filter(pc.equal(segments.column("video_uri"), uri))
        status = seg.column("status").to_pylist()
        errors = seg.column("error").to_pylist()
        ok = np.array([s == OK for s in status])
        weights = np.nan_to_num(spans(seg), nan=0.0)[ok]
        probs = np.stack([seg.column(c).to_numpy(zero_copy_only=False).astype(float) for c in prob_cols], 1)[ok]
        if ok.any():
            w = weights if weights.sum() > 0 else np.ones(len(weights))
            mean = (probs * w[:, None]).sum(0) / w.sum()
        else:
            mean = np.full(len(emotions), np.nan)
        failures = [(s, e) for s, e in zip(status, errors) if s != OK]
        durations = seg.column("video_duration_s").to_pylist()
        rows.append({
            "video_uri": uri,
            "video_duration_s": next((d for d in durations if d is not None), None),
            "segments": seg.num_rows,
            "segments_ok": int(ok.sum()),
            "segments_failed": int((~ok).sum()),
            "scored_seconds": float(weights.sum()),
            **{c: (float(m) if ok.any() else None) for c, m in zip(prob_cols, mean)},
            "dominant_emotion": emotions[int(np.argmax(mean))] if ok.any() else None,
            "status": OK if ok.any() else failures[0][0],
            "error": failures[0][1] if failures else "",
            "model_id": seg.column("model_id")[0].as_py(),
        })
    schema = pa.schema([
        ("video_uri", pa.string()), ("video_duration_s", pa.float64()), ("segments", pa.int32()),
        ("segments_ok", pa.int32()), ("segments_failed", pa.int32()), ("scored_seconds", pa.float64()),
        *[(c, pa.float64()) for c in prob_cols], ("dominant_emotion", pa.string()),
        ("status", pa.string()), ("error", pa.string()), ("model_id", pa.string()),
    ])
    return pa.Table.from_pylist(rows, schema=schema)
