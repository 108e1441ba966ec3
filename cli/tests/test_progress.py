"""Progress output: plain lines off a terminal, fixed-width bars on one."""

from __future__ import annotations

import io

from corral_cli.commands.create import show_create_progress
from corral_cli.progress import Bar, Progress, Spinner
from corral_cli.table import display_width


def test_plain_progress_prints_each_status_once_and_bar_milestones():
    out = io.StringIO()
    progress = Progress(out, tty=False)
    first = Spinner("creating")
    progress.add(first)
    chunks = [
        {"status": "quantizing F16 model to Q4_K_M", "digest": "0000000000000000000", "total": 100, "completed": 0},
        {"status": "quantizing F16 model to Q4_K_M", "digest": "0000000000000000000", "total": 100, "completed": 60},
        {"status": "quantizing F16 model to Q4_K_M", "digest": "0000000000000000000", "total": 100,
         "completed": 100},
        {"status": "writing manifest"}, {"status": "success"},
    ]
    show_create_progress(chunks, progress, first)
    progress.stop()
    assert out.getvalue() == ("creating\n"
                              "quantizing F16 model to Q4_K_M 0%\n"
                              "quantizing F16 model to Q4_K_M 100%\n"
                              "writing manifest\n"
                              "success\n")


def test_cleared_progress_leaves_nothing_behind():
    out = io.StringIO()
    progress = Progress(out, tty=False)
    progress.add(Spinner(""))
    progress.stop_and_clear()
    assert out.getvalue() == ""


def test_bar_fills_the_terminal_width_minus_one():
    bar = Bar("pulling 6a0746a1ec1a", 4_661_216_384, 0)
    bar.set(2_330_608_192)
    line = bar.render(80)
    assert line.startswith("pulling 6a0746a1ec1a  50% ▕")
    assert display_width(line) == 79
    done = Bar("pulling 6a0746a1ec1a", 100, 100).render(80)
    assert "100% ▕" in done and done.rstrip().endswith("▏  100 B")


def test_terminal_progress_redraws_in_place():
    out = io.StringIO()
    progress = Progress(out, tty=True)
    progress.add(Spinner("parsing GGUF"))
    progress.add(Spinner("success"))
    progress.stop()
    text = out.getvalue()
    assert text.endswith("parsing GGUF \x1b[K\nsuccess \x1b[K\x1b[?25h\n")
