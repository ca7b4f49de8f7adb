"""Celery workers: the app (workers.app), order tasks (workers.orders), login tasks (workers.login)."""
