"""Runnable examples: ``python -m examples.demo`` (the whole stack, ``make demo``) and
``python -m examples.strategy`` (a strategy that trades through brokergate)."""
