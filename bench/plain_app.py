"""The anchor: plain Celery, as the seed guide would use it, on the same paper broker.

A task with Celery's own ``rate_limit`` that POSTs an order straight to the broker:
no shared limiter, no state claim. Benchmarks run it beside brokergate in the same
run, so every ratio compares two measurements of the same moment of the machine.

    BENCH_PLAIN_RATE=3/s celery -A bench.plain_app worker -Q plain -c 1
"""

from __future__ import annotations

import os
import threading

import requests
from celery import Celery

app = Celery("bench-plain", broker=os.environ.get("BROKERGATE_REDIS_URL", "redis://127.0.0.1:6379/0"))
app.conf.update(
    task_ignore_result=True,
    worker_prefetch_multiplier=1,
    task_default_queue="plain",
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)

_local = threading.local()


def _session() -> requests.Session:
    s = getattr(_local, "session", None)
    if s is None:
        s = _local.session = requests.Session()
    return s


@app.task(name="bench.plain.post", rate_limit=os.environ.get("BENCH_PLAIN_RATE") or None)
def post(url: str, headers: dict[str, str], form: dict[str, str]) -> int:
    """One broker request, exactly as a naive worker would send it."""
    return _session().post(url, headers=headers, data=form, timeout=10).status_code
