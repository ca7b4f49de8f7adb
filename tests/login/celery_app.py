"""A minimal Celery app for the login tests: just the login tasks, on the test Redis.

(``workers.app`` also includes the order tasks; this keeps the login tests independent of them.)
"""

from __future__ import annotations

import os

from celery import Celery

from common import keys

app = Celery("brokergate-login-test", include=["workers.login"])
app.conf.update(
    broker_url=os.environ["BROKERGATE_REDIS_URL"],
    result_backend=os.environ["BROKERGATE_REDIS_URL"],
    task_default_queue=keys.AUTH_QUEUE,
    worker_prefetch_multiplier=1,
    task_acks_late=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)

if os.environ.get("BROKERGATE_ACCOUNTS"):
    from beat.schedule import configure

    configure(app)
