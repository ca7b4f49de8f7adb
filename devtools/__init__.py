"""The development harness: what tests, benchmarks and the demo share to run brokergate on one
machine (a private redis-server, the paper broker, paper accounts, Celery worker processes).

Not part of the product and not installed with it: nothing in ``brokergate``, ``common``,
``workers``, ``beat``, ``feed`` or ``paper`` imports it, and it imports no test
(``tests/unit/test_layers.py``). ``tests/fixtures/`` wraps it as pytest fixtures.
"""
