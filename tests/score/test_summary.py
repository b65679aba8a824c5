"""The per-video summary (fv2es.score.summary) equals the one fv2es wrote before it was made of
per-part job sums: the reference below is that summary's logic, written plainly (a filter of
the segment table per video). No Ray, no media."""

import random

import numpy as np
import pyarrow as pa
import pytest

from fv2es.score.summary import combine_jobs, summarize_jobs, summarize_videos

EMOTIONS = ["hap", "sad", "neu"]
PROBS = [f"prob_{e}" for e in EMOTIONS]


def reference(segments: pa.Table, emotions: list[str]) -> list[dict]:
    """The per-video summary as fv2es computed it until the per-part sums (quadratic, plain)."""
    rows = []
    for uri in dict.fromkeys(segments.column("video_uri").to_pylist()):
        seg = [r for r in segments.to_pylist() if r["video_uri"] == uri]
        ok = [r for r in seg if r["status"] == "ok"]
        weights = [0.0 if r["start"] is None or r["end"] is None else r["end"] - r["start"] for r in ok]
        w = weights if sum(weights) > 0 else [1.0] * len(ok)
        means = [sum(wi * r[f"prob_{e}"] for wi, r in zip(w, ok)) / sum(w) for e in emotions] if ok else None
        failures = [(r["status"], r["error"]) for r in seg if r["status"] != "ok"]
        rows.append({
            "video_uri": uri,
            "video_duration_s": next((r["video_duration_s"] for r in seg if r["video_duration_s"] is not None), None),
            "segments": len(seg), "segments_ok": len(ok), "segments_failed": len(seg) - len(ok),
            "scored_seconds": float(sum(weights)),
            **{f"prob_{e}": (means[i] if ok else None) for i, e in enumerate(emotions)},
            "dominant_emotion": emotions[int(np.argmax(means))] if ok else None,
            "status": "ok" if ok else failures[0][0],
            "error": failures[0][1] if failures else "",
            "model_id": seg[0]["model_id"],
        })
    return rows


def random_segments(seed: int, videos: int = 30) -> pa.Table:
    """Segment rows of ``videos`` videos, a third of them two jobs (two speaker sides), with
    failed segments, failed videos, missing and zero durations, in one table of whole jobs."""
    rng = random.Random(seed)
    rows = []
    for v in range(videos):
        for side in (["left", "right"] if v % 3 == 0 else [None]):
            job = f"job-{v}-{side}"
            t = 0.0
            for i in range(rng.randint(1, 6)):
                length = rng.choice([0.0, 0.5, 1.0, 2.5]) if v % 5 else 0.0  # every fifth: no durations
                status = rng.choice(["ok", "ok", "ok", "unreadable", "no_audio"]) if v % 4 else "decode_failed"
                probs = [rng.random() for _ in EMOTIONS]
                rows.append({
                    "video_uri": f"s3://b/v{v:03d}.mp4", "job_id": job, "speaker_side": side, "segment_index": i,
                    "start": None if length == 0 and v % 10 == 0 else t, "end": None if length == 0 and v % 10 == 0
                    else t + length, "video_duration_s": None if i == 0 and v % 7 == 0 else 30.0 + v,
                    **{p: (x if status == "ok" else None) for p, x in zip(PROBS, probs)},
                    "status": status, "error": "" if status == "ok" else f"{status} at {i}", "model_id": "m1",
                })
                t += length
    return pa.Table.from_pylist(rows)


def assert_same(table: pa.Table, expected: list[dict]):
    got = table.to_pylist()
    assert [r["video_uri"] for r in got] == [r["video_uri"] for r in expected]
    for g, e in zip(got, expected):
        assert g.keys() == e.keys()
        for key in e:
            if isinstance(e[key], float):
                assert g[key] == pytest.approx(e[key], rel=1e-12, abs=1e-12), (e["video_uri"], key)
            else:
                assert g[key] == e[key], (e["video_uri"], key)


@pytest.mark.parametrize("seed", range(5))
def test_the_summary_equals_the_reference(seed):
    segments = random_segments(seed)
    assert_same(summarize_videos(segments, EMOTIONS), reference(segments, EMOTIONS))


@pytest.mark.parametrize("seed", range(3))
def test_a_videos_jobs_in_different_parts_combine_to_the_same_summary(seed):
    """A video of two jobs (speaker sides) may have them committed in different parts, even in
    different runs: the job sums of every part, concatenated in part order, give the same rows."""
    segments = random_segments(seed)
    # Parts of whole jobs, each job's rows together, jobs dealt round the parts as they come.
    jobs = list(dict.fromkeys(segments.column("job_id").to_pylist()))
    parts = [[j for k, j in enumerate(jobs) if k % 4 == p] for p in range(4)]
    tables = [segments.filter(pa.compute.is_in(segments.column("job_id"), pa.array(p))) for p in parts]
    combined = combine_jobs(pa.concat_tables([summarize_jobs(t) for t in tables]), EMOTIONS)
    in_parts = pa.concat_tables(tables)  # the rows in the order the parts hold them
    assert_same(combined, reference(in_parts, EMOTIONS))


def test_every_prob_column_gets_the_same_mean_and_absent_modalities_do_not_count():
    """Per-modality columns (prob_<modality>_<emotion>) are summarised like the fused ones; a
    segment where a modality is absent (null) is left out of that modality's mean only."""
    segments = pa.Table.from_pylist([
        {"video_uri": "v", "job_id": "j", "start": 0.0, "end": 1.0, "video_duration_s": 4.0, "prob_hap": 0.2,
         "prob_text_hap": None, "status": "ok", "error": "", "model_id": "m"},
        {"video_uri": "v", "job_id": "j", "start": 1.0, "end": 4.0, "video_duration_s": 4.0, "prob_hap": 0.6,
         "prob_text_hap": 0.9, "status": "ok", "error": "", "model_id": "m"},
    ])
    (row,) = summarize_videos(segments, ["hap"]).to_pylist()
    assert row["prob_hap"] == pytest.approx((0.2 * 1 + 0.6 * 3) / 4)
    assert row["prob_text_hap"] == pytest.approx(0.9) and row["dominant_emotion"] == "hap"
    assert row["scored_seconds"] == 4.0


def test_an_empty_part_summarises_to_no_rows():
    empty = random_segments(0).slice(0, 0)
    assert summarize_jobs(empty).num_rows == 0 and summarize_videos(empty, EMOTIONS).num_rows == 0


def test_a_segment_of_several_people_counts_once():
    """``segments.per_person``: a segment showing two people is two rows (the chosen face's and
    the other person's, ``face_select`` ``person``); the video's seconds, counts and means are of
    its segments, as without ``per_person``."""
    def row(start, end, select, hap, status="ok"):
        return {"video_uri": "v", "job_id": "j", "start": start, "end": end, "video_duration_s": 6.0,
                "prob_hap": hap, "prob_sad": 1 - hap, "face_select": select, "status": status, "error": "",
                "model_id": "m"}

    per_person = pa.Table.from_pylist([
        row(0.0, 2.0, "speaker", 0.8), row(0.0, 2.0, "person", 0.1),  # two people: the speaker's row counts
        row(2.0, 3.0, "largest", 0.4),  # one face
        row(3.0, 6.0, "person", 0.0), row(3.0, 6.0, "speaker", 0.3),  # the chosen face needn't come first
    ])
    (got,) = summarize_videos(per_person, ["hap", "sad"]).to_pylist()
    assert got["scored_seconds"] == 6.0 and (got["segments"], got["segments_ok"], got["segments_failed"]) == (3, 3, 0)
    assert got["prob_hap"] == pytest.approx((0.8 * 2 + 0.4 * 1 + 0.3 * 3) / 6)
    alone = per_person.filter(pa.compute.not_equal(per_person.column("face_select"), "person"))
    assert summarize_videos(alone, ["hap", "sad"]).to_pylist() == [got]
    # random segments, each ok one with a second person's row beside it: the same summary as without
    segments = random_segments(1)
    rows = segments.append_column("face_select", pa.array(["speaker"] * segments.num_rows)).to_pylist()
    doubled = [x for r in rows for x in ([r, {**r, "face_select": "person", "prob_hap": 0.0}]
                                         if r["status"] == "ok" else [r])]
    assert_same(summarize_videos(pa.Table.from_pylist(doubled), EMOTIONS), reference(segments, EMOTIONS))
