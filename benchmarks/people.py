"""What the speaker stage costs: the media pipeline per video-second with ``speakers.mode`` auto vs off.

Generates talking-faces clips (tests/pipeline/talking_faces.py: two real face photographs side by
side, taking turns in two espeak-ng voices, mouths moving with their own voice, short pauses
between turns so that speech-to-text hears one utterance), then runs a scoring job's media
stages in this process (:func:`fv2es.pipeline.local.run_stages` of
:func:`fv2es.pipeline.dataset.media_stages`: decode, speakers, speech-to-text with the packaged
tiny.en, spectrogram, faces with the ``speaker`` rule) and numbers the rows (where the video's
speakers are labelled), on every clip, ``speakers.mode=auto`` and ``off`` alternating round by
round so that a machine's load falls on both alike. No Ray and no model: the ratio is of the
media work, where the stage's cost lies (with the model it would be smaller; its extra segments
cost the model one more forward each).

Prints per mode the median over rounds of wall seconds per video-second, the ratio on / off, the
extra seconds per video-second, the stage's own ``speaker_ms`` per video-second, and the rows
(segments) each mode made (on: cut at the changes of speaker too).

    python benchmarks/people.py                    # 4 clips of 4 turns (~10 s each), 3 rounds
    python benchmarks/people.py --clips 1 --rounds 1   # a quick check that it runs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests.pipeline.talking_faces: the generated conversations


def make_clips(folder: Path, count: int) -> tuple[list[Path], float]:
    """``count`` two-person conversations (alternating who starts); their paths and total seconds."""
    from tests.pipeline.talking_faces import conversation

    clips = [conversation(folder / f"talk{k}.mp4", [k % 2, 1 - k % 2, k % 2, 1 - k % 2], faces=2, gap_s=0.3,
                          seed=k) for k in range(count)]
    return [c.path for c in clips], sum(c.duration_s for c in clips)


def run(paths: list[Path], speakers: str) -> tuple[float, float, int]:
    """One pass of the media stages over ``paths``: (wall seconds, speaker_ms summed, rows)."""
    from fv2es.config import ScoreConfig, config_from_dict
    from fv2es.pipeline.dataset import media_stages
    from fv2es.pipeline.local import local_job, run_stages
    from fv2es.pipeline.numbering import number_all
    from fv2es.pipeline.plan import list_jobs

    cfg = config_from_dict({"speakers": {"mode": speakers}})
    stages = media_stages(local_job(cfg, cfg.segments))
    started = time.perf_counter()
    rows, speaker_ms = 0, 0.0
    for path in paths:
        table = number_all(run_stages(list_jobs(str(path), ScoreConfig()), stages))
        rows += table.num_rows
        speaker_ms += sum(x or 0.0 for x in table.column("speaker_ms").to_pylist())
    return time.perf_counter() - started, speaker_ms, rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=4, help="conversations of about 10 s each")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (auto, off), alternating")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        paths, seconds = make_clips(Path(tmp), args.clips)
        run(paths[:1], "auto")  # warm-up: models loaded, caches filled, neither mode charged for it
        walls: dict[str, list[float]] = {"auto": [], "off": []}
        stage_ms, rows = [], {}
        for r in range(args.rounds):
            for mode in (("auto", "off") if r % 2 == 0 else ("off", "auto")):
                wall, ms, n = run(paths, mode)
                walls[mode].append(wall)
                rows[mode] = n
                if mode == "auto":
                    stage_ms.append(ms)
    on, off = statistics.median(walls["auto"]), statistics.median(walls["off"])
    result = {"video_seconds": seconds, "on_s_per_video_s": on / seconds, "off_s_per_video_s": off / seconds,
              "ratio": on / off, "extra_s_per_video_s": (on - off) / seconds,
              "speaker_stage_s_per_video_s": statistics.median(stage_ms) / 1000 / seconds,
              "rows_on": rows["auto"], "rows_off": rows["off"]}
    print(f"{args.clips} clips, {seconds:.1f} video-seconds, {args.rounds} rounds (median wall)")
    print(f"  speakers off : {result['off_s_per_video_s']:.3f} s per video-second, {rows['off']} segments")
    print(f"  speakers auto: {result['on_s_per_video_s']:.3f} s per video-second, {rows['auto']} segments "
          f"(cut at the changes of speaker)")
    print(f"  ratio on/off : {result['ratio']:.2f}x; extra {result['extra_s_per_video_s']:.3f} s per video-second, "
          f"of which the speaker stage's own {result['speaker_stage_s_per_video_s']:.3f}")
    return result


if __name__ == "__main__":
    main()
