"""A minimal Celery app on the test Redis, for Flower's process test (no project tasks needed)."""

import os

from celery import Celery

app = Celery("flower_probe", broker=os.environ["BROKERGATE_REDIS_URL"])
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)


@app.task(name="probe.ping")
def ping() -> str:
    return "pong"
