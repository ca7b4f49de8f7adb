"""bench/procstat.py: the /proc parsers the scale benchmark's RSS and CPU figures rest on."""

from __future__ import annotations

import os
import subprocess
import sys

from bench.procstat import ProcTree, descendants, parse_stat, parse_vmrss_kb

STATUS = "Name:\tpython\nState:\tS (sleeping)\nVmPeak:\t  80000 kB\nVmRSS:\t   71234 kB\nThreads:\t5\n"
# A command name with a space and a parenthesis: fields count from the last ')'.
STAT = ("4242 (celery (w 1)) S 4200 4242 4200 0 -1 4194560 100 0 0 0 "
        "250 150 7 3 20 0 5 0 30960 3133440 381 18446744073709551615")


def test_vmrss_is_read_from_the_status_text() -> None:
    assert parse_vmrss_kb(STATUS) == 71234


def test_a_status_without_vmrss_counts_zero() -> None:
    # Given a zombie's status (no VmRSS line), Then it adds nothing
    assert parse_vmrss_kb("Name:\tx\nState:\tZ (zombie)\n") == 0


def test_stat_gives_the_parent_and_own_cpu_seconds_despite_a_parenthesis_in_the_name() -> None:
    # Given utime 250 and stime 150 ticks at 100 ticks/s (children's 7 + 3 not counted: they are
    # read from the children themselves while alive)
    ppid, cpu = parse_stat(STAT, clk_tck=100)
    # Then
    assert ppid == 4200
    assert cpu == 4.0


def test_descendants_walk_the_whole_tree_once_roots_first() -> None:
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 12, 20: 1, 30: 99}
    assert descendants([10], parents) == [10, 11, 12, 13]
    assert sorted(descendants([10, 12], parents)) == [10, 11, 12, 13]
    assert descendants([30, 40], parents) == [30, 40]  # a root with no children is still counted


def test_a_live_tree_counts_a_child_process() -> None:
    # Given a child that sleeps (so it is alive while read)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # When the tree under this process is read
        got = ProcTree([os.getpid()]).sample()
        alone = ProcTree([child.pid]).sample()
        # Then the child is in it, with memory and CPU of its own
        assert got.processes >= 2
        assert alone.processes == 1 and alone.rss_kb > 1000
        assert got.rss_kb > alone.rss_kb and got.cpu_s > 0
    finally:
        child.kill()
        child.wait()
