"""benchmarks/speed.py at a tiny size: the JSON holds every figure, and the ratios are the formula
applied to the measured walls."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONTENDERS = ("decode_floor", "asr_floor", "face_floor", "model_floor", "seed", "fv2es")
FLOORS = CONTENDERS[:4]


@pytest.mark.slow
def test_speed_benchmark_tiny(tmp_path):
    out = tmp_path / "speed.json"
    bench_md = tmp_path / "BENCHMARKS.md"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "speed.py"), "--clips", "2", "--seconds", "2",
           "--rounds", "1", "--sizes", "320x240,480x270", "--preset", "fv2es_tiny",
           "--corpus", str(tmp_path / "corpus"), "--json", str(out),
           "asr.mode=never"]  # an override reaches fv2es's config; no speech-to-text keeps it short
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())

    assert result["rounds"] == 1  # one round keeps CI short; summarize() over rounds is tested below
    corpus = result["corpus"]
    assert len(corpus["clips"]) == 2 and corpus["video_s"] == pytest.approx(4.0)
    assert [c["captions"] for c in corpus["clips"]] == [True, False]  # one of each
    assert [(c["width"], c["height"]) for c in corpus["clips"]] == [(320, 240), (480, 270)]
    assert all(c["mbit_s"] > 0 for c in corpus["clips"]) and corpus["utterances"] >= 2
    assert (tmp_path / "corpus" / "clip_000_240p.srt").exists()
    assert not (tmp_path / "corpus" / "clip_001_270p.srt").exists()

    for name in CONTENDERS:
        c = result["contenders"][name]
        assert len(c["walls_s"]) == 1 and all(w > 0 for w in c["walls_s"]), name
        assert c["best_s"] == c["median_s"] == c["walls_s"][0]
        assert c["video_s_per_s"] == pytest.approx(corpus["video_s"] / c["best_s"])
        assert c["video_s_per_s_median"] == pytest.approx(corpus["video_s"] / c["median_s"])
        # CPU time is read from /proc in clock ticks (10 ms) per process: on the tiny walls of this run
        # (a tenth of a second for the floors) each process of the tree, Ray's included, may add a tick
        # or two of rounding, so the bound allows that much over the machine's cores.
        rounding = c["processes"] * 2 * 0.01 / c["median_s"]
        assert 0 < c["cores_busy"] <= result["machine"]["cores"] + 0.5 + rounding, name
        assert c["peak_rss_mib"] > 50 and 0 < c["peak_pss_mib"] <= c["peak_rss_mib"], name
    assert set(result["contenders"]["seed"]["stages_s"]) == {"extract", "load", "faces", "model"}
    assert set(result["contenders"]["fv2es"]["stages_s"]) >= {"decode", "face", "model"}
    fv2es = result["contenders"]["fv2es"]
    assert fv2es["segments"] >= 2 and fv2es["segments_ok"] == fv2es["segments"]
    # The captioned clip's text comes from its .srt; the other has none with speech-to-text off.
    assert set(fv2es["text_sources"]) == {"caption", "none"}
    assert result["config"]["asr"] == "never" and result["config"]["overrides"] == ["asr.mode=never"]

    c = result["contenders"]
    assert result["ratio_vs_seed"]["best"] == pytest.approx(c["seed"]["best_s"] / c["fv2es"]["best_s"])
    assert result["ratio_vs_seed"]["median"] == pytest.approx(c["seed"]["median_s"] / c["fv2es"]["median_s"])
    assert result["ratio_vs_floor"]["best"] == pytest.approx(
        c["fv2es"]["best_s"] / (c["decode_floor"]["best_s"] + c["model_floor"]["best_s"]))
    assert result["ratio_vs_floor"]["median"] == pytest.approx(
        c["fv2es"]["median_s"] / (c["decode_floor"]["median_s"] + c["model_floor"]["median_s"]))

    for k in ("best", "median"):  # the full floor: every stage's work alone, summed
        assert result["ratio_vs_full_floor"][k] == pytest.approx(
            c["fv2es"][f"{k}_s"] / sum(c[f][f"{k}_s"] for f in FLOORS))
    assert result["ratio_vs_full_floor"]["best"] < result["ratio_vs_floor"]["best"]
    per_clip = result["floor_per_clip_s"]
    assert per_clip["full floor"] == pytest.approx(sum(c[f]["best_s"] for f in FLOORS) / 2)
    # Speech to text is off here: its floor has nothing to transcribe; the face floor crops every frame.
    assert c["asr_floor"]["clips"] == 0 and c["asr_floor"]["words"] == 0
    assert c["face_floor"]["frames"] >= 4 and c["face_floor"]["found"] >= 1

    startup = result["startup"]
    assert startup["ray_init_s"] > 0 and startup["one_clip_wall_s"] > 0
    assert math.isfinite(startup["fit"]["fixed_s"]) and math.isfinite(startup["fit"]["per_clip_s"])
    # The one-clip run's actors, from Ray's timeline: each began its __init__ before it ended it,
    # and got its first call after; the model's pool is among them.
    actors = startup["actors"]
    assert "ModelStage" in actors, actors
    # (Times count from just before the run's own clock starts, so the last call may end past its wall.)
    for pool, a in actors.items():
        assert 0 <= a["init_start_s"] <= a["init_end_s"] <= a["first_call_s"] <= startup["one_clip_wall_s"] + 1, pool
    assert result["scaling"] is None
    check = result["precision_check"]
    assert 0 <= check["max_abs_prob_diff"] < 0.1 and 0 <= check["top_emotion_agreement"] <= 1
    assert check["bf16_speedup"] > 0 and check["utterances"] == corpus["utterances"]
    assert not bench_md.exists()  # only --write-benchmarks writes BENCHMARKS.md
    assert "model 1x(" in result["config"]["resources"]  # the sizing fv2es chose, recorded


def load_speed():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import speed
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return speed


def test_summarize_takes_best_and_median_over_rounds():
    speed = load_speed()
    runs = [{"wall_s": w, "cpu_s": 2 * w, "cores_busy": c, "peak_rss_mib": m, "peak_pss_mib": m / 2, "processes": p,
             "stages_s": {"model": w / 2}, "segments": 4, "segments_ok": 4}
            for w, c, m, p in ((4.0, 1.5, 900.0, 9), (2.0, 1.0, 1200.0, 7), (3.0, 2.0, 1000.0, 8))]
    out = speed.summarize(runs, video_s=12.0)
    assert (out["best_s"], out["median_s"], out["walls_s"]) == (2.0, 3.0, [4.0, 2.0, 3.0])
    assert (out["video_s_per_s"], out["video_s_per_s_median"]) == (6.0, 4.0)
    assert out["stages_s"] == {"model": 1.5} and out["cores_busy"] == 1.5 and out["cpu_s"] == 6.0
    assert (out["peak_rss_mib"], out["peak_pss_mib"], out["processes"]) == (1200.0, 600.0, 9)
    assert out["segments"] == 4
    line = speed.fit([(1, 10.0), (4, 16.0), (8, 24.0)])
    assert line["fixed_s"] == pytest.approx(8.0) and line["per_clip_s"] == pytest.approx(2.0)
    assert speed.fit([(8, 24.0)]) is None


def test_write_benchmarks_replaces_only_its_section(tmp_path):
    speed = load_speed()
    run = {"best_s": 2.0, "median_s": 2.5, "video_s_per_s": 5.0, "video_s_per_s_median": 4.0, "stages_s": {"model": 1.0},
           "cores_busy": 1.5, "peak_rss_mib": 900.0, "peak_pss_mib": 700.0}
    result = {
        "command": "python benchmarks/speed.py --clips 1", "date": "2026-11-30 14:00 UTC",
        "machine": {"cpu": "Test CPU", "cores": 2, "torch_threads": 2, "load_average": [1.0, 1.0, 1.0]},
        "rounds": 1, "corpus": {"voice": "espeak-ng", "video_s": 10.0, "utterances": 3,
                                "clips": [{"width": 1280, "height": 720, "mbit_s": 4.1, "captions": True}]},
        "config": {"preset": "fv2es_paper", "text_model": "minilm", "precision": "fp32", "asr": "auto"},
        "contenders": {name: run for name in CONTENDERS},
        "ratio_vs_seed": {"best": 1.0, "median": 1.0}, "ratio_vs_floor": {"best": 0.5, "median": 0.5},
        "ratio_vs_full_floor": {"best": 0.25, "median": 0.25},
        "floor_per_clip_s": {**{name: 2.0 for name in FLOORS}, "full floor": 8.0},
        "startup": {"ray_init_s": 3.0, "one_clip_wall_s": 9.0, "points": [[1, 9.0], [8, 30.0]],
                    "fit": {"fixed_s": 6.0, "per_clip_s": 3.0}},
        "scaling": None,
    }
    path = tmp_path / "BENCHMARKS.md"
    path.write_text("# Benchmarks\n\n## Before\n\nkept\n\n" + speed.SECTION + "\n\nold table\n\n## After\n\nkept too\n")
    speed.write_benchmarks(path, result)
    text = path.read_text()
    assert "old table" not in text and text.count(speed.SECTION) == 1
    assert text.index("## Before") < text.index(speed.SECTION) < text.index("## After")
    assert "kept\n" in text and "kept too" in text
    assert "Test CPU with 2 cores" in text and "python benchmarks/speed.py --clips 1" in text
    assert "| the seed's way | 2.0 / 2.5 s | 5.00 / 4.00 |" in text
    assert "| speech-to-text floor | 2.0 / 2.5 s |" in text and "ratio_vs_full_floor" in text
    assert "full floor 8.00 s" in text
    speed.write_benchmarks(path, result)  # again: still one section, in the same place
    assert path.read_text() == text
