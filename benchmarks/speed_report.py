"""The speed benchmark's table, its report lines and its section of BENCHMARKS.md (benchmarks/speed.py)."""

from __future__ import annotations

from pathlib import Path

CONTENDERS = ("decode_floor", "asr_floor", "face_floor", "model_floor", "seed", "fv2es")
FLOORS = ("decode_floor", "asr_floor", "face_floor", "model_floor")
SECTION = "## Speed against the seed's way and the floor (`benchmarks/speed.py`)"


def table(result: dict) -> str:
    """The Markdown table of the contenders."""
    names = {"decode_floor": "decode floor", "asr_floor": "speech-to-text floor", "face_floor": "face floor",
             "model_floor": f"model floor ({result['config']['precision']})",
             "seed": "the seed's way", "fv2es": "`fv2es score`"}
    lines = ["| contender | wall best / median | video-s per wall s (best / median) | stages, s (median round) "
             "| cores busy | peak RSS / PSS |", "| --- | --- | --- | --- | --- | --- |"]
    for name in CONTENDERS:
        c = result["contenders"][name]
        stages = ", ".join(f"{k} {v:.1f}" for k, v in c["stages_s"].items()) or "-"
        busy = "-" if c["cores_busy"] is None else f"{c['cores_busy']:.2f}"
        mem = "-" if c["peak_rss_mib"] is None else f"{c['peak_rss_mib']:.0f} / {c['peak_pss_mib']:.0f} MiB"
        lines.append(f"| {names[name]} | {c['best_s']:.1f} / {c['median_s']:.1f} s | {c['video_s_per_s']:.2f} / "
                     f"{c['video_s_per_s_median']:.2f} | {stages} | {busy} | {mem} |")
    return "\n".join(lines)


def report(result: dict) -> str:
    """The table plus ratios, start-up and scaling lines."""
    r, s, full = result["ratio_vs_seed"], result["ratio_vs_floor"], result["ratio_vs_full_floor"]
    st = result["startup"]
    lines = [table(result), "",
             f"ratio_vs_seed (seed wall / fv2es wall): {r['best']:.2f}x best, {r['median']:.2f}x median; "
             f"ratio_vs_floor (fv2es wall / (decode floor + model floor)): {s['best']:.2f}x best, {s['median']:.2f}x median; "
             f"ratio_vs_full_floor (fv2es wall / (decode + speech to text + faces + model floors)): "
             f"{full['best']:.2f}x best, {full['median']:.2f}x median",
             f"fv2es start-up: Ray start {st['ray_init_s']:.1f} s (not in the walls above); one clip "
             f"{st['one_clip_wall_s']:.1f} s wall"]
    if st["fit"]:
        lines[-1] += (f"; fitted over {', '.join(str(n) for n, _ in st['points'])} clips: "
                      f"{st['fit']['fixed_s']:.1f} s fixed + {st['fit']['per_clip_s']:.2f} s per clip")
    if st.get("actors"):
        lines.append("one clip's actors (s from the run's start: __init__ began-ended, first call): " + "; ".join(
            f"{pool} {a.get('init_start_s', float('nan')):.1f}-{a.get('init_end_s', float('nan')):.1f}, "
            f"{a.get('first_call_s', float('nan')):.1f}" for pool, a in st["actors"].items()))
    per_clip = result["floor_per_clip_s"]
    lines.append("floors per clip (best round / clips; no fixed cost: their models load and their pools start "
                 "before the timing): " + ", ".join(f"{k} {v:.2f} s" for k, v in per_clip.items()))
    p = result.get("precision_check")
    if p:
        lines.append(f"model in bf16 autocast against fp32 ({p['utterances']} utterances): largest probability "
                     f"difference {p['max_abs_prob_diff']:.2g}, top emotion agrees on {p['top_emotion_agreement']:.0%}, "
                     f"{p['bf16_speedup']:.2f}x the fp32 speed")
    if result["scaling"]:
        lines.append("scaling: " + ", ".join(f"{n} clips {w:.1f} s" for n, w in result["scaling"].items()))
    return "\n".join(lines)


def busy_note(result: dict) -> str:
    """A warning when other work shared the machine: a load average above the core count when the
    benchmark started. (The load at the end counts the benchmark's own Ray processes: a scoring job
    on 2 cores keeps it near 4 by itself, so it says nothing about other work.)"""
    m = result["machine"]
    load = (m["load_average"] or [0.0])[0]
    if load <= m["cores"] + 0.5:
        return ""
    return (f" **The machine was shared: load average {load:.1f} on {m['cores']} cores at the start, so these "
            "figures are noisy and slower than on a quiet machine.**")


def write_benchmarks(path: Path, result: dict) -> None:
    """Replace (or append) this benchmark's section of BENCHMARKS.md."""
    m, corpus = result["machine"], result["corpus"]
    clips = corpus["clips"]
    sizes = ", ".join(sorted({f"{c['width']}x{c['height']}" for c in clips}))
    rates = f"{min(c['mbit_s'] for c in clips)}-{max(c['mbit_s'] for c in clips)}"
    body = (f"{SECTION}\n\n```\n{result['command']}\n```\n\n"
            f"{result['date']}, {m['cpu']} with {m['cores']} cores (torch threads {m['torch_threads']}), load "
            f"average at the start {', '.join(f'{v:.1f}' for v in m['load_average'] or [])}. Corpus: "
            f"{len(clips)} clips, {corpus['video_s']:.0f} video-seconds ({sizes}, {rates} Mbit/s, "
            f"{corpus['voice']} speech, {sum(c['captions'] for c in clips)} with captions), "
            f"{corpus['utterances']} utterances; model {result['config']['preset']} with "
            f"{result['config']['text_model']}, speech-to-text {result['config']['asr']}; "
            f"{result['rounds']} round{'s' if result['rounds'] != 1 else ''}, contenders interleaved.{busy_note(result)}"
            + (f" `fv2es score` sized itself: {result['config']['resources']}." if result['config'].get('resources') else "")
            + f"\n\n{report(result)}\n")
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    if SECTION in text:
        start = text.index(SECTION)
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + body + ("\n" + text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.write_text(text)
