"""docker-compose.yml and the demo run the same processes, and every queue has a consumer in both.

Checked against the app's own tables: queue names from common/keys.py, the declared queues
and the route table of workers/app.py, the demo's process plan (examples/demo.py).
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from brokergate import cli, launch
from brokergate.cli import _LenientEnv
from common import keys
from common.health import expected_queues
from common.settings import parse_accounts
from examples import demo

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def compose_accounts() -> dict[str, Any]:
    return parse_accounts((REPO / "accounts.compose.toml").read_text(), _LenientEnv(os.environ), "accounts.compose.toml")


SECRET_SERVICES = {"paper", "beat", "postback", "feed"}  # and every worker: they log in, send or verify
SENTINELS = ["sentinel-1", "sentinel-2", "sentinel-3"]
REDIS_SERVICES = {"redis", "redis-replica", *SENTINELS}  # the `ha` profile adds all but redis


def celery_argv(argv: list[str], accts: dict[str, Any]) -> list[str]:
    """The Celery command a service runs: ``brokergate worker ...`` / ``brokergate beat`` expanded
    the way the CLI expands them (brokergate/launch.py), anything else as it is."""
    if argv[:3] != ["python", "-m", "brokergate"] and argv[:3] != [sys.executable, "-m", "brokergate"]:
        return argv
    args = cli.build_parser().parse_args(argv[3:])
    if args.command == "beat":
        return launch.beat_argv(loglevel=args.loglevel, python="python")
    if args.command != "worker":
        return argv
    queues = [q for q in (args.queues or "").split(",") if q]
    layout = launch.worker_layout(args.account, accounts=accts, urgent_only=args.urgent_only, auth=args.auth,
                                  queues=queues, concurrency=args.concurrency, name=args.name)  # fmt: skip
    return launch.worker_argv(layout, loglevel=args.loglevel, python="python")


def consumers_in(commands: dict[str, list[str]], accts: dict[str, Any]) -> dict[str, list[str]]:
    """queue -> the services/processes whose worker command consumes it."""
    out: dict[str, list[str]] = {}
    for name, argv in commands.items():
        argv = celery_argv(argv, accts)
        if "worker" in argv and "-Q" in argv:
            for q in argv[argv.index("-Q") + 1].split(","):
                out.setdefault(q, []).append(name)
    return out


def app_module() -> Any:
    return pytest.importorskip("workers.app")


def all_queues(accts: dict[str, Any]) -> set[str]:
    """Every queue the app's tables name for these accounts."""
    qs = set(expected_queues(accts))
    wa = app_module()
    qs |= set(wa.declared_queues(accts))
    qs |= set(wa.TASK_QUEUES.values())
    for a in accts:
        qs.add(wa.route_task(wa.PLACE_TASK, ({"account": a},), {}, {})["queue"])
        qs.add(wa.route_task(wa.PLACE_TASK, ({"account": a, "urgent": True},), {}, {})["queue"])
        qs.add(wa.route_task(wa.CANCEL_TASK, (a, "x"), {}, {})["queue"])
        qs.add(wa.route_task(wa.MODIFY_TASK, (a, "x"), {}, {})["queue"])
    return qs


def test_the_compose_accounts_are_the_example_accounts_pointed_at_the_paper_service() -> None:
    example = (REPO / "accounts.example.toml").read_text()
    assert tomllib.loads((REPO / "accounts.compose.toml").read_text()) == tomllib.loads(demo.accounts_for(example, "paper:8700"))


def test_redis_is_persistent_noeviction_and_health_checked(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    cmd = redis["command"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes"
    assert cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"
    assert "redis-cli" in redis["healthcheck"]["test"]
    assert any(v.endswith(":/data") for v in redis["volumes"])


def test_every_app_service_shares_the_image_redis_and_accounts(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        if name in REDIS_SERVICES:
            continue
        assert svc["build"] == "." and svc["image"] == "brokergate:latest", name
        env = svc["environment"]
        assert env["BROKERGATE_REDIS_URL"] == "redis://redis:6379/0", name
        assert env["BROKERGATE_ACCOUNTS"] == "/app/accounts.compose.toml", name
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy", name
    assert "accounts.compose.toml" in (REPO / "Dockerfile").read_text()


def test_secrets_go_only_to_the_services_that_log_in_send_or_verify(compose: dict[str, Any]) -> None:
    # Given the secret variables the accounts file names (all in .env)
    secret_vars = set(demo.secret_refs(tomllib.loads((REPO / "accounts.compose.toml").read_text())))
    assert secret_vars
    for name, svc in compose["services"].items():
        needs = name in SECRET_SERVICES or name.startswith("worker-")
        # Then .env (the secrets) reaches exactly those services
        assert (".env" in (svc.get("env_file") or [])) == needs, f"{name}: env_file {svc.get('env_file')}"
        # and no other service is handed a secret one by one
        if not needs:
            assert not secret_vars & set(svc.get("environment") or {}), name
    # Flower gets its own credentials and nothing else
    flower_env = set(compose["services"]["flower"]["environment"])
    assert {"BROKERGATE_FLOWER_USER", "BROKERGATE_FLOWER_PASSWORD"} <= flower_env
    for name in ("strategy", "flower", "metrics"):
        assert "env_file" not in compose["services"][name], name


def test_every_long_running_service_has_a_healthcheck_of_its_own_kind(compose: dict[str, Any],
                                                                      compose_accounts: dict[str, Any]) -> None:
    services = compose["services"]
    for name, svc in services.items():
        hc = svc.get("healthcheck") or {}
        if name == "strategy":  # runs once and exits: nothing to watch
            assert hc.get("disable") is True
            continue
        assert hc.get("test"), f"{name} has no healthcheck"
        assert hc.get("interval") and hc.get("retries"), name
    # Workers: a Celery ping of the very node the command starts
    for name, svc in services.items():
        if not name.startswith("worker-"):
            continue
        argv = celery_argv(svc["command"], compose_accounts)
        node = argv[argv.index("-n") + 1].split("@")[0]
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD-SHELL", name
        assert "celery -A workers.app inspect ping" in test[1] and f"-d {node}@$$HOSTNAME" in test[1], name
    # The receiver by its /healthz, the feed and Beat by their heartbeats in Redis
    assert "/healthz" in " ".join(services["postback"]["healthcheck"]["test"])
    assert services["feed"]["healthcheck"]["test"] == ["CMD", "brokergate", "status", "--component", "feed"]
    assert services["beat"]["healthcheck"]["test"] == ["CMD", "brokergate", "status", "--component", "beat"]
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["metrics"]["healthcheck"]["test"])


def test_every_service_runs_the_demos_command(compose: dict[str, Any], compose_accounts: dict[str, Any]) -> None:
    # Given the demo's plan for the same accounts
    specs = {s.name: s for s in demo.plan(compose_accounts, paper_port=8700, postback_port=8701, flower_port=5555, strategy=True)}
    services = compose["services"]
    as_compose = {name: ["python" if a == sys.executable else a for a in s.argv] for name, s in specs.items()}
    # Workers, Beat, feed and strategy: the very same command
    for name, argv in as_compose.items():
        if name.startswith("worker-") or name in ("beat", "feed", "strategy"):
            assert services[name]["command"] == argv, name
    # Services bound to the container's interface: same module, port and options but the host
    assert services["postback"]["command"] == [a if a != "127.0.0.1" else "0.0.0.0" for a in as_compose["postback"]]
    assert services["flower"]["command"] == [a if a != "127.0.0.1" else "0.0.0.0" for a in as_compose["flower"]]
    assert services["metrics"]["command"] == [a if a != "127.0.0.1" else "0.0.0.0" for a in as_compose["metrics"]]
    paper = " ".join(services["paper"]["command"])
    assert "python -m paper --host 0.0.0.0 --port 8700 --config /tmp/paper.toml --seed 1" in paper
    assert "--write-paper-config /tmp/paper.toml --postback-base http://postback:8701" in paper
    # and nothing in compose that the demo does not run (but Redis, which the demo may reuse)
    assert set(services) - REDIS_SERVICES == set(specs)


def test_every_queue_has_a_consumer_in_compose_and_in_the_demo(compose: dict[str, Any], compose_accounts: dict[str, Any]) -> None:
    wanted = all_queues(compose_accounts)
    assert {keys.AUTH_QUEUE, keys.DEFAULT_QUEUE, "orders.kite1", "orders.kite1.urgent", "orders.angel1.urgent"} <= wanted
    in_compose = consumers_in({n: s["command"] for n, s in compose["services"].items()}, compose_accounts)
    specs = demo.plan(compose_accounts, paper_port=8700, postback_port=8701, flower_port=5555)
    in_demo = consumers_in({s.name: s.argv for s in specs}, compose_accounts)
    assert not wanted - set(in_compose), f"queues without a consumer in docker-compose.yml: {wanted - set(in_compose)}"
    assert not wanted - set(in_demo), f"queues without a consumer in the demo: {wanted - set(in_demo)}"
    # the urgent lane of each account has a worker of its own
    for a in compose_accounts:
        assert f"worker-urgent-{a}" in in_compose[keys.urgent_queue(a)]
        assert f"worker-urgent-{a}" in in_demo[keys.urgent_queue(a)]


def test_order_workers_prefetch_one_and_read_the_urgent_lane_first(compose: dict[str, Any],
                                                                   compose_accounts: dict[str, Any]) -> None:
    workers = 0
    for name, svc in compose["services"].items():
        argv = celery_argv(svc["command"], compose_accounts)
        if "worker" not in argv:
            continue
        workers += 1
        assert argv[argv.index("--prefetch-multiplier") + 1] == "1", name
        assert argv[argv.index("-P") + 1] == "threads", name
        queues = argv[argv.index("-Q") + 1].split(",")
        if any(q.startswith("orders.") for q in queues):
            assert queues[0].endswith(".urgent"), f"{name}: the urgent lane must come first in -Q"
    assert workers == 2 * len(compose_accounts) + 1


def test_nobody_hand_types_celery_options(compose: dict[str, Any]) -> None:
    # Workers and Beat run through `brokergate worker` / `brokergate beat` (brokergate/launch.py)
    for name, svc in compose["services"].items():
        if name.startswith("worker-") or name == "beat":
            assert svc["command"][:3] == ["python", "-m", "brokergate"], name
            assert "celery" not in svc["command"], name


def test_flower_is_never_bare(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert flower["command"][:3] == ["python", "-m", "brokergate.flower"]  # the launcher with the guard
    assert not any("basic" in a for a in flower["command"])  # credentials never in argv
    raw = (REPO / "docker-compose.yml").read_text()
    assert "${BROKERGATE_FLOWER_USER:?" in raw and "${BROKERGATE_FLOWER_PASSWORD:?" in raw  # compose refuses to start without
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond the host's loopback"


def test_the_demo_plan_covers_the_example_accounts() -> None:
    accts = parse_accounts((REPO / "accounts.example.toml").read_text(), _LenientEnv(os.environ))
    specs = demo.plan(accts, paper_port=1, postback_port=2, flower_port=3)
    names = [s.name for s in specs]
    assert names[0] == "paper" and names[-1] == "strategy"
    assert {"beat", "feed", "postback", "flower", "worker-auth"} <= set(names)
    assert all(f"worker-orders-{a}" in names and f"worker-urgent-{a}" in names for a in accts)


def test_demo_secrets_cover_every_reference_and_paper_users_carry_them() -> None:
    doc = tomllib.loads((REPO / "accounts.example.toml").read_text())
    env = demo.demo_env(doc, {})
    for var in demo.secret_refs(doc):
        assert env[var]
    users = demo.paper_users(doc, env, "http://127.0.0.1:8701")
    assert {u["user_id"] for u in users} == {t["user_id"] for t in doc["accounts"].values()}
    for (name, t), u in zip(doc["accounts"].items(), users, strict=True):
        assert u["postback_url"] == f"http://127.0.0.1:8701/postback/{name}"
        assert u["password"] == env[t["password"][4:]] and u["totp_secret"] == env[t["totp_secret"][4:]]
    parsed = tomllib.loads(demo.paper_config(users))
    assert [u["user_id"] for u in parsed["users"]] == [u["user_id"] for u in users]
    assert len(env["BROKERGATE_FLOWER_PASSWORD"]) >= 12


def test_the_ha_profile_is_a_replica_and_three_sentinels_the_services_follow(compose: dict[str, Any]) -> None:
    """The `ha` profile has the failover harness's shape (devtools/redisha.py): a persistent
    replica of `redis` and three sentinels, quorum 2; every app service waits for the sentinels
    when they run and takes their addresses from the two variables the README says to set."""
    services = compose["services"]
    replica = services["redis-replica"]
    cmd = replica["command"]
    assert replica["profiles"] == ["ha"] and "profiles" not in services["redis"]
    assert cmd[cmd.index("--replicaof") + 1: cmd.index("--replicaof") + 3] == ["redis", "6379"]
    assert cmd[cmd.index("--appendonly") + 1] == "yes" and cmd[cmd.index("--maxmemory-policy") + 1] == "noeviction"
    assert replica["volumes"][0].endswith(":/data") and replica["volumes"] != services["redis"]["volumes"]
    # Three sentinels on hosts (volumes, names) of their own, monitoring redis:6379 with quorum 2
    monitors = set()
    for name in SENTINELS:
        svc = services[name]
        script = svc["command"][-1]
        assert svc["profiles"] == ["ha"] and svc["hostname"] == name, name
        assert "redis-server /data/sentinel.conf --sentinel" in script and "'port 26379'" in script, name
        monitors |= {line for line in script.split("'") if line.startswith("sentinel monitor ")}
        assert "get-master-addr-by-name brokergate" in " ".join(svc["healthcheck"]["test"]), name
    assert monitors == {"sentinel monitor brokergate redis 6379 2"}
    assert len({services[n]["volumes"][0] for n in SENTINELS}) == 3
    # Every app service: waits for each sentinel if it runs, and is given the sentinels' variables
    for name, svc in services.items():
        if name in REDIS_SERVICES:
            continue
        for s in SENTINELS:
            assert svc["depends_on"][s] == {"condition": "service_healthy", "required": False}, name
        env = svc["environment"]
        assert env["BROKERGATE_REDIS_SENTINELS"] == "${BROKERGATE_REDIS_SENTINELS:-}", name
        assert env["BROKERGATE_REDIS_MASTER"] == "${BROKERGATE_REDIS_MASTER:-}", name
    # and the README's values name these very sentinels and master
    readme = (REPO / "README.md").read_text()
    assert "COMPOSE_PROFILES=ha" in readme
    assert f"BROKERGATE_REDIS_SENTINELS={','.join(f'{s}:26379' for s in SENTINELS)}" in readme
    assert "BROKERGATE_REDIS_MASTER=brokergate" in readme
