"""Settings and the accounts file: every mistake is one clear error naming the field or variable."""

from __future__ import annotations

import pytest

from common.errors import ConfigError
from common.settings import Cap, load_settings, parse_accounts, parse_cap, require_secrets
from tests.fixtures.accounts import account_toml

GOOD = account_toml(
    "kite1", env="K", api_key="kitekey1", rest_url="http://127.0.0.1:8700", caps={"orders": ["3/s", "200/min"]}
) + account_toml("angel1", "angel", "A123", "angelkey", env="A", password="env:A_MPIN")
ENV = {"K_PASSWORD": "pw-kite-123", "K_TOTP": "JBSWY3DPEHPK3PXP", "K_SECRET": "s3cr3t-api", "A_MPIN": "7391", "A_TOTP": "JBSWY3DPEHPK3PXQ"}


def test_good_file_resolves_secrets_and_defaults() -> None:
    accounts = parse_accounts(GOOD, ENV)
    kite = accounts["kite1"]
    assert kite.api_secret.get() == "s3cr3t-api"
    assert kite.rest_url == "http://127.0.0.1:8700"
    assert kite.login_url == "https://kite.zerodha.com"  # real host by default
    assert kite.caps["orders"] == (Cap(3, 1), Cap(200, 60))
    assert kite.caps["quote"] == (Cap(1, 1),)  # broker default kept for other classes
    assert accounts["angel1"].caps["orders"] == (Cap(10, 1), Cap(500, 60), Cap(1000, 3600))  # the 2026 rule
    assert kite.login_time.hour == 8 and kite.login_time.minute == 45
    assert kite.celery_rate_limit() == "3/s"


def test_no_repr_shows_a_secret() -> None:
    accounts = parse_accounts(GOOD, ENV)
    text = repr(accounts) + str(accounts)
    for value in ENV.values():
        assert value not in text


@pytest.mark.parametrize(
    ("mutation", "named"),
    [
        (lambda t: t.replace('broker = "kite"', 'broker = "kyte"'), "accounts.kite1.broker"),
        (lambda t: t.replace('user_id = "AB1234"\n', ""), "accounts.kite1.user_id"),
        (lambda t: t.replace('"3/s"', '"3 per second"'), "accounts.kite1.caps.orders"),
        (lambda t: t.replace('api_secret = "env:K_SECRET"', 'api_secret = "plaintextsecret"'), "accounts.kite1.api_secret"),
        (lambda t: t.replace('api_key = "kitekey1"', 'api_key = "kitekey1"\ncolour = "red"'), "accounts.kite1.colour"),
        (lambda t: t.replace("[accounts.kite1]", '[accounts.kite1]\nlogin_time = "8.45"'), "accounts.kite1.login_time"),
        (lambda t: t + "\n[[[", "not valid TOML"),
    ],
)
def test_bad_field_is_one_error_naming_it(mutation, named: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_accounts(mutation(GOOD), ENV)
    assert named in str(e.value)
    assert "\n" not in str(e.value).strip() or named == "not valid TOML"


def test_missing_secret_variable_is_named_when_used_and_at_start_up() -> None:
    """Given an environment without one secret, When the accounts are loaded, Then the public
    fields are there (a strategy needs nothing else), and using the secret, or a start-up check,
    is one error naming the variable."""
    env = dict(ENV)
    del env["K_TOTP"], env["A_MPIN"]
    accounts = parse_accounts(GOOD, env)
    assert accounts["kite1"].api_key == "kitekey1" and accounts["kite1"].caps["orders"] == (Cap(3, 1), Cap(200, 60))
    assert accounts["kite1"].api_secret.get() == "s3cr3t-api"
    with pytest.raises(ConfigError, match=r"accounts\.kite1\.totp_secret: environment variable K_TOTP is not set"):
        accounts["kite1"].totp_secret.get()
    with pytest.raises(ConfigError) as e:
        require_secrets(accounts.values())
    assert "environment variable K_TOTP is not set" in str(e.value)
    assert "accounts.angel1.password: environment variable A_MPIN is not set" in str(e.value)
    require_secrets([])  # nothing to check is no error


def test_a_secret_reference_is_read_on_first_use_and_registered_with_the_redactor() -> None:
    from common.logs import redact

    env: dict[str, str] = {}
    accounts = parse_accounts(GOOD.replace("env:K_SECRET", "env:K_SECRET_LATE"), env)
    secret = accounts["kite1"].api_secret
    assert secret and secret.variable == "K_SECRET_LATE"  # configured, not yet resolvable
    env["K_SECRET_LATE"] = "late-secret-value-42"  # e.g. set by .env before first use
    assert secret.get() == "late-secret-value-42"
    assert redact("sent late-secret-value-42") == "sent ***"
    assert repr(secret) == "Secret('***')"


def test_missing_accounts_file_is_named(tmp_path) -> None:
    from common.settings import load_accounts

    with pytest.raises(ConfigError, match="BROKERGATE_ACCOUNTS"):
        load_accounts(tmp_path / "nope.toml", environ={})


def test_settings_from_environment() -> None:
    s = load_settings({"BROKERGATE_REDIS_URL": "redis://h:1/2", "BROKERGATE_LOG_LEVEL": "debug", "BROKERGATE_FLOWER_PASSWORD": "pw-xyz"})
    assert s.redis_url == "redis://h:1/2" and s.log_level == "DEBUG"
    assert "pw-xyz" not in repr(s)
    with pytest.raises(ConfigError, match="BROKERGATE_LOG_LEVEL"):
        load_settings({"BROKERGATE_LOG_LEVEL": "loud"})


@pytest.mark.parametrize(("text", "cap"), [("10/s", Cap(10, 1)), ("400/min", Cap(400, 60)), ("1000/hour", Cap(1000, 3600)), ("5000/day", Cap(5000, 86400))])
def test_parse_cap(text: str, cap: Cap) -> None:
    assert parse_cap(text) == cap
    assert parse_cap(str(cap)) == cap


def _second(name: str, broker: str, user_id: str, api_key: str, caps: dict[str, list[str]]) -> str:
    return account_toml(name, broker, user_id, api_key, env="K", caps=caps)


def test_two_accounts_of_one_user_with_different_caps_are_refused() -> None:
    """Kite counts per user across API keys: a second table for the same user with other caps
    would double-count or fight over one limiter. One error names both accounts and the field."""
    text = GOOD + _second("kite2", "kite", "AB1234", "kitekey2", {"orders": ["5/s"]})
    with pytest.raises(ConfigError) as e:
        parse_accounts(text, ENV)
    msg = str(e.value)
    assert msg.startswith("accounts.kite2.caps.orders: [\"5/s\"] disagrees with accounts.kite1.caps.orders: "
                          "[\"3/s\", \"200/min\"]")
    assert "user 'AB1234'" in msg and "share one limiter" in msg and "\n" not in msg


def test_two_accounts_of_one_user_with_the_same_caps_share_one_scope() -> None:
    text = GOOD + _second("kite2", "kite", "AB1234", "kitekey2", {"orders": ["3/s", "200/min"]})
    accounts = parse_accounts(text, ENV)
    assert accounts["kite1"].limit_scope() == accounts["kite2"].limit_scope() == "kite:user:AB1234"
    assert accounts["angel1"].limit_scope() == "angel:user:A123"


def test_a_broker_counting_per_app_shares_by_api_key() -> None:
    text = _second("f1", "fyers", "XY11111", "APP-100", {}) + _second("f2", "fyers", "XY22222", "APP-100", {})
    accounts = parse_accounts(text, ENV)
    assert accounts["f1"].limit_scope() == accounts["f2"].limit_scope() == "fyers:app:APP-100"
    assert accounts["f1"].shared_caps() == (Cap(10, 1), Cap(200, 60), Cap(100000, 86400))
    lowered = _second("f1", "fyers", "XY11111", "APP-100", {}) + _second("f2", "fyers", "XY22222", "APP-100", {"all": ["5/s"]})
    with pytest.raises(ConfigError, match=r"accounts\.f2\.caps\.all: \[\"5/s\"\] disagrees with accounts\.f1\.caps\.all"):
        parse_accounts(lowered, ENV)


def test_a_shared_budget_cap_is_refused_where_the_broker_has_none() -> None:
    with pytest.raises(ConfigError, match=r"accounts\.kite2\.caps\.all: kite counts each endpoint class on its own"):
        parse_accounts(GOOD + _second("kite2", "kite", "ZZ9999", "k", {"all": ["5/s"]}), ENV)


def test_every_broker_says_whose_requests_it_counts() -> None:
    from common.brokers import BROKER_NAMES, spec_for

    for name in BROKER_NAMES:
        spec = spec_for(name)
        assert spec.caps_counted_per in ("user", "app"), name
        doc = __import__(f"common.brokers.{name}.spec", fromlist=["SPEC"]).__doc__ or ""
        assert "Limiter scope" in doc and "docs/brokers.md" in doc, f"{name}: record the scope facts and their source"


@pytest.mark.parametrize(("extra", "message"), [
    ('{ read_timout_s = 2 }', "extra.read_timout_s: not a setting of kite"),  # a typo is named, not ignored
    ('{ read_timeout_s = "2" }', "extra.read_timeout_s: must be a number >= 0"),
    ('{ imei = "x" }', "extra.imei: not a setting of kite"),  # another broker's key
])
def test_an_accounts_extra_is_typed_per_broker(extra: str, message: str) -> None:
    text = account_toml("k1", "kite", env="K") + f"extra = {extra}\n"
    with pytest.raises(ConfigError) as e:
        parse_accounts(text, ENV)
    assert message in str(e.value)


def test_a_brokers_own_extras_and_the_generic_ones_are_read() -> None:
    text = account_toml("s1", "shoonya", env="K") + (
        'extra = { imei = "dev1", read_timeout_s = 3, symbol_exchanges = ["NSE", "NFO"] }\n')
    acct = parse_accounts(text, ENV)["s1"]
    assert acct.extra["imei"] == "dev1" and acct.read_timeout_s == 3.0
