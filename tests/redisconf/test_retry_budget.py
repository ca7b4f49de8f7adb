"""A command's retries over a lost connection stay within ``BROKERGATE_REDIS_RETRY_S`` however
redis-py nests them (common/redisconf.py ``BudgetRetry``): a command retries its connection,
and the connection retries its own connect and handshake, each with the whole budget."""

from __future__ import annotations

from dataclasses import replace

import pytest
import redis

from common import redisconf
from common.redis import connect


def test_a_server_that_hangs_up_on_every_handshake_is_given_up_on_within_the_budget(
        hangs_up: tuple[str, list[int]]) -> None:  # fmt: skip
    """Given a server that hangs up on every handshake and a budget of one second, When a command
    is sent, Then it fails after about as many attempts as the budget's backoffs allow (before:
    the command's retries times the connection's, 5 x 5 here; 14 x 14 = 196 attempts and 158 s
    at the default 10 s)."""
    url, accepted = hangs_up
    conf = replace(redisconf.parse({"BROKERGATE_REDIS_URL": url}), retry_s=1.0)
    client = connect(conf)
    with pytest.raises(redis.ConnectionError):
        client.ping()
    per_loop = redisconf.retry_count(1.0) + 1
    assert 1 <= len(accepted) <= 2 * per_loop, len(accepted)
