"""The jobs' progress line (fv2es.progress) and the console that draws it (fv2es.logs), without Ray."""

import io
import logging
import sys

import pyarrow as pa
import pytest

from fv2es import logs
from fv2es.progress import Progress, count_rows


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.fixture
def console_out(capsys):
    """What the fv2es console writes (to a captured stdout: not a terminal)."""
    logs.console()
    capsys.readouterr()
    return lambda: capsys.readouterr().out


def test_plain_lines_every_tenth_and_twenty_seconds_then_a_final_line(console_out):
    clock = Clock()
    progress = Progress("score", 100, live=False, clock=clock)
    for done in range(1, 101):  # one video a second, one failing in ten, 2.5 video-seconds each
        clock.now += 1.0
        progress.update(done, done // 10, 2.5 * done)
    progress.finish()
    lines = console_out().splitlines()
    assert len(lines) == 5  # at 20, 40, 60, 80 s (a tenth of the work and 20 seconds apart), and the end
    assert lines[0] == "[score] 20/100 videos, 2 failed, 2.5 video-s/s, ETA 1:20"
    assert lines[-1] == "[score] 100/100 videos, 10 failed, 2.5 video-s/s, done in 1:40"


def test_a_stalled_job_still_says_it_is_alive(console_out):
    clock = Clock()
    progress = Progress("preprocess", 10, "utterances", live=False, clock=clock)
    for _ in range(130):  # nothing done for over two minutes: a line a minute
        clock.now += 1.0
        progress.update(0)
    assert console_out().splitlines() == ["[preprocess] 0/10 utterances, 0 failed, 0.0 video-s/s, ETA ?"] * 2


def test_on_a_terminal_the_line_is_redrawn_in_place(monkeypatch):
    logs.console()
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert logs.live()
    clock = Clock()
    progress = Progress("score", 4, clock=clock)  # live: asks the console
    for done in range(1, 5):
        clock.now += 1.0
        progress.update(done, 0, float(done))
    progress.finish()
    logging.getLogger("fv2es.test").info("done in 4.0 s")
    out = terminal.getvalue()
    assert out.count("\r") == 4 and out.count("\n") == 2  # three redraws and the final line; then a plain one
    assert out.endswith("\r[score] 4/4 videos, 0 failed, 1.0 video-s/s, done in 0:04\x1b[K\ndone in 4.0 s\n")


def test_an_open_progress_line_is_ended_before_the_next_message(monkeypatch):
    logs.console()
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    clock = Clock()
    progress = Progress("score", 4, clock=clock)
    clock.now += 1.0
    progress.update(1)
    logging.getLogger("fv2es.test").warning("a warning")
    assert terminal.getvalue() == "\r[score] 1/4 videos, 0 failed, 0.0 video-s/s, ETA 0:03\x1b[K\na warning\n"


def test_count_rows_counts_failures_and_seconds():
    table = pa.table({"status": ["ok", "decode_error", "ok"], "start": [0.0, 1.0, 2.0], "end": [1.5, None, 4.0]})
    assert count_rows(table) == (3, 1, 3.5)
