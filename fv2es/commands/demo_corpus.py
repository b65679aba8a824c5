"""``fv2es demo-corpus OUT``: a small labelled corpus of talking-face clips.

Each clip is an H.264 + AAC mp4 in which every modality alone carries the class (a tinted,
flipped photograph of a face, a class-pitched voice, class words in the transcript), with
``manifest.jsonl``/``manifest.csv`` and a ``.txt`` transcript beside each clip.
"""

from __future__ import annotations

import argparse


def _pair(kind):
    def parse(text: str):
        parts = text.replace("x", ",").split(",")
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(f"expected two values like 2,4 or 160x120, got {text!r}")
        return tuple(kind(p) for p in parts)

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", metavar="OUT", help="folder to write the clips and manifests into")
    parser.add_argument("--videos", type=int, default=60, help="number of clips [60]")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same corpus [0]")
    parser.add_argument("--seconds", type=_pair(float), default=(2.0, 4.0), metavar="MIN,MAX",
                        help="clip length range in seconds [2,4]")
    parser.add_argument("--size", type=_pair(int), default=(160, 120), metavar="WxH",
                        help="frame size [160x120]")
    parser.add_argument("--fps", type=int, default=15, help="frame rate [15]")


def run(args: argparse.Namespace) -> int:
    from fv2es.media.democorpus import make_demo_corpus

    if args.videos < 1:
        raise SystemExit("fv2es demo-corpus: --videos must be at least 1")
    manifest = make_demo_corpus(args.out, videos=args.videos, seed=args.seed, seconds=args.seconds,
                                size=args.size, fps=args.fps)
    print(f"wrote {args.videos} clips and {manifest}")
    return 0
