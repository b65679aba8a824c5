"""Look at an ``fv2es report`` page as a browser draws it: headless Chromium screenshots.

    python tools/screenshot_report.py REPORT_DIR/index.html OUT_DIR [--width 1400] [--height 6000]
    python tools/screenshot_report.py --sample OUT_DIR      # a report of the tests' small inputs

Takes one tall screenshot of the page (``page.png``) and cuts it into screen-high pieces
(``page-1.png``, ``page-2.png`` ...) that are easy to view one at a time; a narrow (phone-wide)
screenshot is ``narrow.png``. ``--sample`` first writes a report of the inputs the report tests
build by hand (a failed video, a failed segment, transcripts, true labels, a training run) into
``OUT_DIR/report``. Needs ``chromium`` (Debian's package) or ``--chromium PATH``.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def screenshot(chromium: str, page: Path, png: Path, width: int, height: int) -> None:
    """One headless Chromium screenshot of ``page`` at ``width`` x ``height`` CSS pixels."""
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile: no state from earlier runs
        subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={width},{height}",
                        f"--screenshot={png}", page.resolve().as_uri()],
                       check=True, capture_output=True, timeout=120)


def cut(png: Path, piece_height: int) -> list[Path]:
    """Cut ``png`` into pieces ``piece_height`` high, dropping the blank end of the page."""
    import numpy as np
    from PIL import Image

    with Image.open(png) as image:
        rows = np.asarray(image.convert("L")).min(axis=1)
        used = int(np.flatnonzero(rows < 250).max(initial=0)) + 20  # last row with anything on it
        pieces = []
        for n, top in enumerate(range(0, min(used, image.height), piece_height), 1):
            piece = png.with_name(f"{png.stem}-{n}.png")
            image.crop((0, top, image.width, min(top + piece_height, used))).save(piece)
            pieces.append(piece)
    return pieces


def sample_report(out: Path) -> Path:
    """The report of the report tests' hand-written inputs (no Ray): scores with a failed video and
    a failed segment, transcripts, a manifest of true labels, a training run."""
    sys.path.insert(0, str(ROOT))
    from fv2es.report import write_report
    from tests.test_report import write_labels, write_run, write_scores

    data = out / "inputs"
    shutil.rmtree(data, ignore_errors=True)
    write_scores(data / "scores")
    write_run(data / "run")
    labels = write_labels(data / "labels.jsonl", data / "scores")
    return write_report(out / "report", scores_uri=str(data / "scores"), run_uri=str(data / "run"),
                        labels_uri=str(labels))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("page", nargs="?", help="the report's index.html (not with --sample)")
    parser.add_argument("out", help="folder for the PNGs")
    parser.add_argument("--sample", action="store_true", help="screenshot a report of the tests' small inputs")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=6000, help="page height captured [6000]")
    parser.add_argument("--piece", type=int, default=1000, help="height of each cut piece [1000]")
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    args = parser.parse_args(argv)
    if args.sample == bool(args.page):
        parser.error("give a page or --sample, not both")
    if not args.chromium:
        parser.error("no chromium found; install Debian's chromium package or pass --chromium")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    page = sample_report(out) if args.sample else Path(args.page)
    full = out / "page.png"
    screenshot(args.chromium, page, full, args.width, args.height)
    screenshot(args.chromium, page, out / "narrow.png", 420, 2400)
    for piece in cut(full, args.piece):
        print(piece)
    print(out / "narrow.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
