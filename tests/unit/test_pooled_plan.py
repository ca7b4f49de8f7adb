"""The pooled worker's command line and the default worker plan (brokergate/launch.py)."""

from __future__ import annotations

import pytest

from brokergate import cli, launch
from common.errors import ConfigError
from workers import pooled


def _accounts(n: int, concurrency: int = 2) -> dict[str, dict[str, int]]:
    return {f"a{k:03d}": {"concurrency": concurrency} for k in range(n)}


def _layout(argv: list[str], accts: dict[str, dict[str, int]]) -> launch.WorkerLayout:
    return launch.layout_from_args(cli.build_parser().parse_args(["worker", *argv]), accts)


def test_pooled_argv_queues_every_lane_with_a_thread_per_prefetch() -> None:
    accts = {"b": {"concurrency": 3}, "a": {"concurrency": 2}}
    layout = _layout(["--pooled"], accts)
    argv = launch.worker_argv(layout, python="python")
    assert argv[argv.index("-Q") + 1] == "orders.a.urgent,orders.a,orders.b.urgent,orders.b"
    assert argv[argv.index("-n") + 1] == "pool@%h"
    assert argv[argv.index("-c") + 1] == str(1 + 2 + 1 + 3)
    assert argv[argv.index("-P") + 1] == "threads"
    assert launch.worker_env(layout) == {"BROKERGATE_WORKER_POOLED": "1"}
    assert launch.POOLED_ENV == pooled.POOLED_ENV
    # The worker's own lane table is the one the launch counted threads from.
    assert sum(pooled.lane_prefetch(accts)(q) for q in layout.queues) == layout.concurrency
    assert _layout(["a"], accts).pooled is False and launch.worker_env(_layout(["a"], accts)) == {}


def test_pooled_names_accounts_and_refuses_what_does_not_apply() -> None:
    accts = _accounts(3)
    assert _layout(["--pooled", "a002", "a000"], accts).queues[::2] == ("orders.a000.urgent", "orders.a002.urgent")
    assert _layout(["a001", "--pooled"], accts).queues == ("orders.a001.urgent", "orders.a001")
    for argv, word in ((["--pooled", "zz"], "unknown account"), (["--pooled", "-c", "4"], "--concurrency"),
                       (["--pooled", "--auth"], "--pooled"), (["--shard", "0/2"], "--shard needs --pooled")):
        with pytest.raises(ConfigError, match=word):
            _layout(argv, accts)


def test_shards_split_the_sorted_accounts_between_them() -> None:
    accts = _accounts(7)
    shards = [_layout(["--pooled", "--shard", f"{i}/3"], accts) for i in range(3)]
    assert [s.node for s in shards] == ["pool-0of3", "pool-1of3", "pool-2of3"]
    served = [[q.split(".")[1] for q in s.queues if q.endswith(".urgent")] for s in shards]
    assert served == [["a000", "a003", "a006"], ["a001", "a004"], ["a002", "a005"]]
    for bad in ("3/3", "1", "a/b", "-1/2", "0/0"):
        with pytest.raises(ConfigError, match="--shard"):
            launch.parse_shard(bad)
    with pytest.raises(ConfigError, match="no account"):
        _layout(["--pooled", "--shard", "5/6"], _accounts(3))


def test_worker_plan_is_dedicated_for_a_handful_and_pooled_above() -> None:
    few = launch.worker_plan(_accounts(4))
    assert [w.node for w in few] == ["orders-a000", "urgent-a000", "orders-a001", "urgent-a001", "orders-a002",
                                     "urgent-a002", "orders-a003", "urgent-a003", "auth"]
    assert not any(w.pooled for w in few)
    many = launch.worker_plan(_accounts(101), accounts_per_pool=50)
    assert [w.node for w in many] == ["pool-0of3", "pool-1of3", "pool-2of3", "auth"]
    served = [q for w in many[:-1] for q in w.queues]
    assert sorted(served) == sorted(q for a in _accounts(101) for q in (f"orders.{a}", f"orders.{a}.urgent"))
    assert [w.concurrency for w in many[:-1]] == [34 * 3, 34 * 3, 33 * 3]
    assert [w.node for w in launch.worker_plan(_accounts(5))] == ["pool", "auth"]
    assert [w.node for w in launch.worker_plan(_accounts(10), pooled_above=10)][-1] == "auth"
    assert len(launch.worker_plan(_accounts(100))) == 5  # 4 shards of 25, and auth


def test_each_layout_carries_the_arguments_that_run_it() -> None:
    accts = _accounts(9)
    for layout in [*launch.worker_plan(accts), *launch.worker_plan(_accounts(2))]:
        again = _layout(list(layout.args), accts if layout.pooled or layout.node == "auth" else _accounts(2))
        assert again == layout
