"""Order tests. Fixtures come from tests/fixtures/* (registered as plugins by tests/conftest.py):
redis, paper broker, accounts, and Celery workers (tests/fixtures/workers.py)."""
