"""The runaway strategy of issue #18, shared by tests/safety (short) and tests/chaos (1,000 orders):
several processes place orders in a loop until the kill switch stops them."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from common import keys, orderstore
from common.models import TERMINAL_STATES
from common.redis import get_redis
from devtools.waiting import wait_for
from tests.orders.helpers import order_requests
from tests.paths import REPO

# One strategy process: alternate market buys (they fill: positions) and limit buys far under the
# market (they rest OPEN: open orders) until it has placed ``n`` or the account is halted.
_STRATEGY = """
import json, sys
import brokergate as bg
account, n = sys.argv[1], int(sys.argv[2])
placed, halted = [], False
for i in range(n):
    kw = dict(order_type="MARKET") if i % 2 == 0 else dict(order_type="LIMIT", price="1.00")
    try:
        h = bg.place_order(account=account, exchange="NSE", symbol="INFY", side="BUY", quantity=1,
                           product="INTRADAY", strategy="runaway", deadline_s=60, **kw)
    except bg.Halted:
        halted = True
        break
    placed.append(h.id)
print(json.dumps({"placed": placed, "halted": halted}), flush=True)
"""


@dataclass
class Runaway:
    procs: list[subprocess.Popen[str]]

    def results(self, timeout_s: float = 120) -> list[dict[str, Any]]:
        out = []
        for p in self.procs:
            stdout, stderr = p.communicate(timeout=timeout_s)
            assert p.returncode == 0, stderr[-2000:]
            out.append(json.loads(stdout.strip().splitlines()[-1]))
        return out


def start(account: str, processes: int, orders_each: int = 0, *, orders_total: int = 0) -> Runaway:
    """``processes`` strategies placing ``orders_each`` orders each, or ``orders_total`` between them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BG_TEST_")}  # strategies hold no secret
    counts = ([orders_total // processes + (i < orders_total % processes) for i in range(processes)]
              if orders_total else [orders_each] * processes)
    return Runaway([subprocess.Popen([sys.executable, "-c", _STRATEGY, account, str(n)], env=env,
                                     cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                    for n in counts])


def halt_all_from_the_cli(reason: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "brokergate", "halt", "--all", "--square-off", "--reason", reason,
                          "--json"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    return dict(json.loads(out.stdout))


def check_halted_cleanly(paper: Any, user: str, account: str, placed: list[str], halt_at_ms: int) -> dict[str, int]:
    """Every order settled; no entry sent after the halt; every order open at the broker cancelled;
    positions flat there; nothing lost or sent twice. Returns counts for the caller to show."""
    r = get_redis()
    terminal = {s.value for s in TERMINAL_STATES}

    def states() -> collections.Counter[str]:
        return collections.Counter((orderstore.get(r, coid) or {}).get("state", "MISSING") for coid in placed)

    wait_for(lambda: set(states()) <= terminal, 60, 0.2, what=f"every order settled ({states()})")
    wait_for(lambda: not [o for o in paper.orders() if o.get("user_id") == user and o["status"] == "OPEN"], 30, 0.2,
             what="every order open at the broker cancelled")
    wait_for(lambda: all(p["quantity"] == 0 for p in paper.portfolio("kite", user)["positions"]), 30, 0.2,
             what="positions flat at the broker")
    posts = [e for e in order_requests(paper.requests(), user) if e["status"] == 200]
    tags = collections.Counter(e["tag"] for e in posts)
    assert all(n == 1 for n in tags.values()), "an order reached the broker twice"
    entries = [t for t in tags if t in set(placed)]
    late = [t for t in entries if int((orderstore.get(r, t) or {}).get("sent_at_ms") or 0) > halt_at_ms]
    assert late == [], f"{len(late)} entries sent after the halt at {halt_at_ms}: {[orderstore.get(r, t) for t in late[:3]]}"
    got = states()
    assert got["MISSING"] == 0, "an order was lost"
    stats = r.hgetall(keys.stats(account))
    return {"placed": len(placed), "sent": len(entries), "refused_after_halt": got.get("REJECTED", 0),
            "halted_refused": int(stats.get("halted_refused") or 0)}
