"""Routing: every task goes to a declared queue; order tasks go by account, urgent ones skip the line."""

from __future__ import annotations

from common import keys
from common.settings import parse_accounts
from tests.fixtures.accounts import account_toml

TOML = account_toml("k1", env="R", api_key="key", caps={"orders": ["3/s", "200/min"]})


def _accounts():  # type: ignore[no-untyped-def]
    return parse_accounts(TOML, environ={"R_PASSWORD": "p", "R_TOTP": "t", "R_SECRET": "s"})


def test_every_task_is_routed_to_a_declared_queue() -> None:
    from workers.app import app, declared_queues, route_task

    app.loader.import_default_modules()
    declared = set(declared_queues(_accounts()))
    samples = {
        "brokergate.place_order": ([{"account": "k1"}], {}),
        "brokergate.cancel_order": (["k1", "abc"], {}),
        "brokergate.modify_order": (["k1", "abc", {"price": "1"}], {}),
        "brokergate.reconcile_account": (["k1"], {}),
    }
    ours = sorted(n for n in app.tasks if n.startswith("brokergate."))
    assert {"brokergate.place_order", "brokergate.cancel_order", "brokergate.modify_order",
            "brokergate.sweep_orders", "brokergate.reconcile_account"} <= set(ours)
    for name in ours:
        args, kwargs = samples.get(name, (["k1"], {}))
        route = route_task(name, args, kwargs, {})
        assert route and route["queue"] in declared, f"{name} -> {route}"


def test_order_routes() -> None:
    from workers.app import route_task

    assert route_task("brokergate.place_order", [{"account": "k1"}], {}, {}) == {"queue": "orders.k1"}
    assert route_task("brokergate.place_order", [{"account": "k1", "urgent": True}], {}, {}) == {
        "queue": keys.urgent_queue("k1")}
    assert route_task("brokergate.place_order", [], {"order": {"account": "k1"}}, {}) == {"queue": "orders.k1"}
    assert route_task("brokergate.cancel_order", ["k1", "x"], {}, {}) == {"queue": "orders.k1.urgent"}
    assert route_task("brokergate.modify_order", [], {"account": "k1", "client_order_id": "x"}, {}) == {
        "queue": "orders.k1.urgent"}
    assert route_task("brokergate.login", ["k1"], {}, {}) == {"queue": "auth"}
    assert route_task("brokergate.sweep_orders", [], {}, {}) == {"queue": "default"}


def test_urgent_lane_is_declared_before_the_normal_one_and_rate_limit_per_account() -> None:
    from workers.app import app, declared_queues, worker_rate_limit

    q = declared_queues(_accounts())
    assert q.index("orders.k1.urgent") < q.index("orders.k1")
    assert app.conf.broker_transport_options["queue_order_strategy"] == "priority"
    assert app.conf.worker_prefetch_multiplier == 1 and app.conf.task_acks_late
    # the shortest window's rate, not 200/min's average (one task per 0.3 s would forbid bursts)
    assert worker_rate_limit(["orders.k1.urgent", "orders.k1"], _accounts()) == "3/s"
    assert worker_rate_limit(["orders.k1"], _accounts(), concurrency=4) == "12/s"
    assert worker_rate_limit(["default"], _accounts()) is None
