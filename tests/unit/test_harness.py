"""The harness itself: a private Redis that tests may flush and restart."""

import redis


def test_private_redis_is_clean_and_restartable(redis_server, r: redis.Redis) -> None:
    # Given a clean database
    assert r.dbsize() == 0
    r.set("bg:probe", "1")
    # When Redis restarts with its append-only file
    redis_server.restart()
    # Then the data survived
    assert redis.Redis.from_url(redis_server.url, decode_responses=True).get("bg:probe") == "1"
