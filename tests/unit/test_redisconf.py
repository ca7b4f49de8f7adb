"""The one Redis configuration (common/redisconf.py), pure: environment in, each library's
arguments out, every mistake a ConfigError naming the variable. No server needed."""

from __future__ import annotations

import io
import logging
import ssl

import pytest

from common import redisconf
from common.errors import ConfigError
from common.logs import RedactingFilter
from common.redisconf import RedisConf, celery_conf, parse, redbeat_conf, redis_kwargs, sentinel_args
from common.settings import load_settings

SENTINEL_ENV = {
    "BROKERGATE_REDIS_URL": "redis://mymaster/2",
    "BROKERGATE_REDIS_SENTINELS": "10.0.0.1:26379, 10.0.0.2:26380,10.0.0.3:26381",
    "BROKERGATE_REDIS_MASTER": "mymaster",
    "BROKERGATE_REDIS_USERNAME": "bg",
    "BROKERGATE_REDIS_PASSWORD": "p@ss:w/rd-data",
}
TLS_ENV = {
    "BROKERGATE_REDIS_URL": "rediss://bg:tls-secret-1@redis.internal:6380/1",
    "BROKERGATE_REDIS_TLS_CA": "/etc/bg/ca.crt",
    "BROKERGATE_REDIS_TLS_CERT": "/etc/bg/client.crt",
    "BROKERGATE_REDIS_TLS_KEY": "/etc/bg/client.key",
}


def test_the_plain_default_is_todays_url_and_waits_for_no_replica() -> None:
    conf = parse({})
    assert (conf.url, conf.host, conf.port, conf.db, conf.tls, conf.sentinel) == (
        "redis://127.0.0.1:6379/0", "127.0.0.1", 6379, 0, False, False)
    assert conf.wait_replicas == 0 and conf.wait_timeout_ms == 100
    kw = redis_kwargs(conf)
    assert "ssl_cert_reqs" not in kw and "password" not in kw and kw["decode_responses"] is True
    assert celery_conf(conf)["broker_url"] == celery_conf(conf)["result_backend"] == "redis://127.0.0.1:6379/0"
    assert "broker_use_ssl" not in celery_conf(conf)
    beat = redbeat_conf(conf)
    assert beat["redbeat_redis_url"] == "redis://127.0.0.1:6379/0" and "redbeat_redis_use_ssl" not in beat
    assert load_settings({"BROKERGATE_REDIS_URL": "redis://h:7000/3"}).redis_url == "redis://h:7000/3"


def test_rediss_with_an_acl_user_maps_to_every_library_with_verified_tls() -> None:
    conf = parse(TLS_ENV)
    assert conf.tls and conf.username == "bg" and conf.password == "tls-secret-1"
    kw = redis_kwargs(conf)
    assert kw["ssl_cert_reqs"] == "required" and kw["ssl_ca_certs"] == "/etc/bg/ca.crt"
    assert (kw["ssl_certfile"], kw["ssl_keyfile"]) == ("/etc/bg/client.crt", "/etc/bg/client.key")
    c = celery_conf(conf, {"visibility_timeout": 60})
    assert c["broker_url"] == TLS_ENV["BROKERGATE_REDIS_URL"]
    assert c["broker_transport_options"] == {"visibility_timeout": 60}
    for key in ("broker_use_ssl", "redis_backend_use_ssl"):
        assert c[key] == {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_ca_certs": "/etc/bg/ca.crt",
                          "ssl_certfile": "/etc/bg/client.crt", "ssl_keyfile": "/etc/bg/client.key"}
    assert redbeat_conf(conf)["redbeat_redis_use_ssl"]["ssl_ca_certs"] == "/etc/bg/ca.crt"


def test_env_credentials_win_over_the_urls_and_are_quoted_into_celerys_url() -> None:
    conf = parse({"BROKERGATE_REDIS_URL": "redis://old:old-pass@h:6379/0", "BROKERGATE_REDIS_USERNAME": "bg",
                  "BROKERGATE_REDIS_PASSWORD": "a/b:c@d"})
    assert (conf.username, conf.password) == ("bg", "a/b:c@d")
    assert redis_kwargs(conf)["password"] == "a/b:c@d"
    assert celery_conf(conf)["broker_url"] == "redis://bg:a%2Fb%3Ac%40d@h:6379/0"
    from kombu.utils.url import url_to_parts

    assert url_to_parts(celery_conf(conf)["broker_url"]).password == "a/b:c@d"


def test_sentinel_maps_to_redis_py_kombu_celery_backend_and_redbeat() -> None:
    conf = parse(SENTINEL_ENV)
    assert conf.sentinels == (("10.0.0.1", 26379), ("10.0.0.2", 26380), ("10.0.0.3", 26381))
    assert conf.wait_replicas == 1 and conf.db == 2  # a replica's ack by default with Sentinel
    nodes, sentinel_kwargs, data = sentinel_args(conf)
    assert nodes == list(conf.sentinels) and "password" not in sentinel_kwargs and "ssl" not in sentinel_kwargs
    assert (data["username"], data["password"], data["db"]) == ("bg", "p@ss:w/rd-data", 2)
    assert data["retry"].get_retries() == redisconf.retry_count(10.0) > 5

    c = celery_conf(conf, {"visibility_timeout": 60}, {"visibility_timeout": 60})
    assert c["broker_url"] == c["result_backend"] == (
        "sentinel://bg:p%40ss%3Aw%2Frd-data@10.0.0.1:26379/2;sentinel://10.0.0.2:26380/2;sentinel://10.0.0.3:26381/2")
    for key in ("broker_transport_options", "result_backend_transport_options"):
        assert c[key]["master_name"] == "mymaster" and c[key]["visibility_timeout"] == 60
    from kombu import Connection

    kc = Connection(c["broker_url"], transport_options=c["broker_transport_options"])
    assert (kc.userid, kc.password, kc.transport_cls) == ("bg", "p@ss:w/rd-data", "sentinel")
    assert len(kc.alt) == 3
    assert "p@ss" not in kc.as_uri()  # kombu masks it where Celery prints the broker

    beat = redbeat_conf(conf)
    assert beat["redbeat_redis_url"].startswith("redis-sentinel://")
    opts = beat["redbeat_redis_options"]
    assert (opts["sentinels"], opts["service_name"], opts["password"], opts["username"], opts["db"]) == (
        list(conf.sentinels), "mymaster", "p@ss:w/rd-data", "bg", 2)
    assert opts["retry_period"] == 10.0


def test_sentinel_auth_and_tls_for_the_sentinels_themselves() -> None:
    env = {**SENTINEL_ENV, "BROKERGATE_REDIS_URL": "rediss://mymaster/0", "BROKERGATE_REDIS_TLS_CA": "/ca.pem",
           "BROKERGATE_REDIS_SENTINEL_USERNAME": "watcher", "BROKERGATE_REDIS_SENTINEL_PASSWORD": "sentinel-pw"}
    conf = parse(env)
    assert conf.sentinel_tls  # follows the data nodes unless told
    _, skw, data = sentinel_args(conf)
    assert (skw["username"], skw["password"], skw["ssl"], skw["ssl_ca_certs"]) == ("watcher", "sentinel-pw", True, "/ca.pem")
    assert data["ssl"] is True and data["ssl_ca_certs"] == "/ca.pem"
    c = celery_conf(conf)
    assert c["broker_transport_options"]["sentinel_kwargs"]["password"] == "sentinel-pw"
    assert c["broker_use_ssl"]["ssl_ca_certs"] == "/ca.pem"
    assert redbeat_conf(conf)["redbeat_redis_options"]["sentinel_kwargs"]["username"] == "watcher"
    assert not parse({**env, "BROKERGATE_REDIS_SENTINEL_TLS": "0"}).sentinel_tls
    assert set(conf.secrets()) == {"p@ss:w/rd-data", "p%40ss%3Aw%2Frd-data", "sentinel-pw"}  # as in URLs too


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"BROKERGATE_REDIS_URL": "http://h:1/0"}, "BROKERGATE_REDIS_URL"),
        ({"BROKERGATE_REDIS_URL": "redis://h:1/zero"}, "BROKERGATE_REDIS_URL"),
        ({"BROKERGATE_REDIS_URL": "redis://h:99999/0"}, "BROKERGATE_REDIS_URL"),
        ({"BROKERGATE_REDIS_SENTINELS": "h1:26379"}, "BROKERGATE_REDIS_MASTER"),
        ({"BROKERGATE_REDIS_MASTER": "m"}, "BROKERGATE_REDIS_SENTINELS"),
        ({"BROKERGATE_REDIS_SENTINELS": "h1,h2:26379", "BROKERGATE_REDIS_MASTER": "m"}, "BROKERGATE_REDIS_SENTINELS"),
        ({"BROKERGATE_REDIS_TLS_CA": "/ca.pem"}, "BROKERGATE_REDIS_TLS_CA"),
        ({"BROKERGATE_REDIS_URL": "rediss://h/0", "BROKERGATE_REDIS_TLS_CERT": "/c.pem"}, "BROKERGATE_REDIS_TLS_KEY"),
        ({"BROKERGATE_REDIS_WAIT_TIMEOUT_MS": "0"}, "BROKERGATE_REDIS_WAIT_TIMEOUT_MS"),
        ({"BROKERGATE_REDIS_WAIT_REPLICAS": "-1"}, "BROKERGATE_REDIS_WAIT_REPLICAS"),
        ({"BROKERGATE_REDIS_RETRY_S": "nan"}, "BROKERGATE_REDIS_RETRY_S"),
        ({**SENTINEL_ENV, "BROKERGATE_REDIS_SENTINEL_TLS": "maybe"}, "BROKERGATE_REDIS_SENTINEL_TLS"),
    ],
)
def test_a_bad_value_is_an_error_naming_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        parse(env)


def test_retries_are_bounded_by_the_configured_seconds_of_backoff() -> None:
    assert redisconf.retry_count(0) == 0
    for seconds in (1.0, 10.0, 30.0):
        n = redisconf.retry_count(seconds)
        waits = [min(redisconf.BACKOFF_BASE_S * 2**i, redisconf.BACKOFF_CAP_S) for i in range(n)]
        assert sum(waits) <= seconds < sum(waits) + redisconf.BACKOFF_CAP_S


def test_no_redis_password_in_a_repr_a_description_or_a_log_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from common import redis as bg_redis
    from common import settings as bg_settings

    for name, value in {**SENTINEL_ENV, "BROKERGATE_REDIS_SENTINEL_PASSWORD": "sentinel-pw-77"}.items():
        monkeypatch.setenv(name, value)
    bg_settings.settings.cache_clear()
    try:
        conf = bg_redis.redis_conf()  # what every process reads first: registers the passwords
    finally:
        bg_settings.settings.cache_clear()
    text = repr(conf) + conf.describe() + str(RedisConf())
    assert "p@ss:w/rd-data" not in text and "sentinel-pw-77" not in text and "bg@" in conf.describe()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter())
    log = logging.getLogger("test.redis.redaction")
    log.addHandler(handler)
    try:
        log.warning("could not connect to %s", celery_conf(conf)["broker_url"])  # the password URL-quoted
        log.warning("sentinel said %s / %s", "p@ss:w/rd-data", "sentinel-pw-77")
    finally:
        log.removeHandler(handler)
    out = stream.getvalue()
    assert "p@ss:w/rd-data" not in out and "sentinel-pw-77" not in out and "p%40ss" not in out
    assert out.count("***") == 3
