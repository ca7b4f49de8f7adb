"""Beat across a SIGKILLed primary (#22): two Beats (RedBeat, one lock) on the failover harness;
the one holding the lock keeps it (or a Beat takes it again) and goes on firing, neither exits,
and no slot fires twice.

Before beat/lock.py, RedBeat's lock extend (a plain redis-py Lock on a client without retries)
raised MasterNotFoundError in the failover window and the Beat exited: both Beats, in both
chaos runs of tests/ha/test_failover.py."""

from __future__ import annotations

import itertools
import re
import subprocess
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from brokergate.launch import beat_argv
from common import keys
from common.redis import get_redis
from devtools.processes import stop_process
from devtools.redisha import RedisHA
from devtools.waiting import wait_for
from tests.ha.stack import _spawn

pytestmark = pytest.mark.slow
SENT = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) INFO celery\.beat: Scheduler: Sending due task "
                  r"sweep_orders \(brokergate\.sweep_orders\)", re.MULTILINE)  # fmt: skip


def _sends(log: Path) -> list[float]:
    """When this Beat sent a sweep (its log's clock, seconds since the epoch)."""
    text = log.read_text(errors="replace") if log.exists() else ""
    return [datetime.strptime(m, "%Y-%m-%d %H:%M:%S,%f").timestamp() for m in SENT.findall(text)]


@pytest.mark.timeout(120)
def test_beat_survives_a_primary_sigkill_and_fires_each_slot_once(make_redis_ha: Callable[..., RedisHA],
                                                                  tmp_path: Path) -> None:  # fmt: skip
    ha = make_redis_ha()
    logs = [tmp_path / f"beat{i}.log" for i in range(2)]
    beats: list[subprocess.Popen[bytes]] = []
    try:
        # Given two Beats, one holding RedBeat's lock (ticking) and firing the sweep every 5 s
        beats = [_spawn(beat_argv(), log) for log in logs]
        r = get_redis()
        wait_for(lambda: r.exists(keys.BEAT_HEARTBEAT), 30, 0.1, what="a Beat ticking")
        # When the primary is SIGKILLed and the replica promoted
        killed = time.time()
        ha.kill_primary()
        ha.wait_failover(timeout_s=20)
        promoted = time.time()
        # Then a Beat fires on the new primary (within the lock's timeout and a tick), neither exits,
        wait_for(lambda: any(t > promoted for log in logs for t in _sends(log)), 25, 0.1,
                 what=f"a sweep sent after the promotion\n{_tails(logs)}")  # fmt: skip
        dead = [i for i, b in enumerate(beats) if b.poll() is not None]
        assert not dead, f"Beat {dead} exited at the failover\n{_tails(logs)}"
        # and no 5 s slot fired twice (one Beat at a time, the slot's last run kept)
        sends = sorted(t for log in logs for t in _sends(log))
        gaps = [b - a for a, b in itertools.pairwise(sends)]
        assert all(g > 2.5 for g in gaps), f"a slot fired twice: {gaps}\n{_tails(logs)}"
        firing = [i for i, log in enumerate(logs) if any(t > killed for t in _sends(log))]
        print(f"promoted {promoted - killed:.2f} s after the kill; Beat(s) firing after it: {firing}; "
              f"first sweep {min(t for t in sends if t > promoted) - promoted:.2f} s after the promotion")
    finally:
        for b in beats:
            stop_process(b, grace_s=3)


def _tails(logs: list[Path]) -> str:
    return "\n".join(f"--- {p.name} ---\n{p.read_text(errors='replace')[-1500:]}" for p in logs if p.exists())
