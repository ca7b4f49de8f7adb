"""Groups in the accounts file (common/groups.py): parsed with the accounts' public fields alone,
every mistake a ConfigError naming the field, and the accounts parser unmoved by the table."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

import pytest

from common import groups as bg_groups
from common import settings as bg_settings
from common.errors import ConfigError
from common.groups import Group, load_groups, parse_groups
from common.settings import parse_accounts
from tests.fixtures.accounts import account_toml

REPO = Path(__file__).resolve().parents[2]
ACCOUNTS = (account_toml("kite1", env="K") + account_toml("angel1", "angel", "A123", "akey", env="A")
            + account_toml("fyers1", "fyers", "XP12345", "APP-100", env="F"))
NAMES = ("kite1", "angel1", "fyers1")
FAMILY = '\n[groups.family]\naccounts = ["kite1", "angel1", "fyers1"]\nmultipliers = { angel1 = 2, fyers1 = 0.5 }\n'


def test_a_group_parses_in_file_order_with_its_multipliers_defaulting_to_one() -> None:
    doc = tomllib.loads(ACCOUNTS + FAMILY)
    got = parse_groups(doc["groups"], NAMES)
    assert got == {"family": Group("family", ("kite1", "angel1", "fyers1"),
                                   {"angel1": Decimal(2), "fyers1": Decimal("0.5")})}
    assert got["family"].multiplier("kite1") == 1 and got["family"].multiplier("angel1") == 2


def test_the_accounts_parser_neither_chokes_on_nor_mistakes_the_groups_table() -> None:
    # Given the same accounts with and without a groups table (no secret in the environment)
    alone = parse_accounts(ACCOUNTS, {})
    with_groups = parse_accounts(ACCOUNTS + FAMILY, {})
    # Then the accounts are the same: no group became an account, and nothing failed
    assert list(with_groups) == list(alone) == list(NAMES)


@pytest.mark.parametrize(
    ("table", "named"),
    [
        ('[groups.family]\naccounts = ["kite1", "nosuch"]', "groups.family.accounts"),
        ("[groups.family]\naccounts = []", "groups.family.accounts"),
        ("[groups.family]\nmultipliers = { kite1 = 2 }", "groups.family.accounts"),
        ('[groups.family]\naccounts = ["kite1", "kite1"]', "groups.family.accounts"),
        ('[groups.family]\naccounts = "kite1"', "groups.family.accounts"),
        ('[groups.family]\naccounts = ["kite1"]\nmultipliers = { kite1 = 0 }', "groups.family.multipliers.kite1"),
        ('[groups.family]\naccounts = ["kite1"]\nmultipliers = { kite1 = -2 }', "groups.family.multipliers.kite1"),
        ('[groups.family]\naccounts = ["kite1"]\nmultipliers = { kite1 = "two" }', "groups.family.multipliers.kite1"),
        ('[groups.family]\naccounts = ["kite1"]\nmultipliers = { kite1 = true }', "groups.family.multipliers.kite1"),
        ('[groups.family]\naccounts = ["kite1"]\nmultipliers = { kite1 = nan }', "groups.family.multipliers.kite1"),
        ('[groups.family]\naccounts = ["kite1"]\nmultipliers = { angel1 = 2 }', "groups.family.multipliers.angel1"),
        ('[groups.family]\naccounts = ["kite1"]\nmultipliers = 2', "groups.family.multipliers"),
        ('[groups.family]\naccounts = ["kite1"]\nsize = 2', "groups.family.size"),
        ('[groups.kite1]\naccounts = ["angel1"]', "groups.kite1"),  # a group named like an account
        ('[groups."a b"]\naccounts = ["angel1"]', "groups.a b"),
        ("groups = 3", "groups"),
    ],
)
def test_every_mistake_is_a_config_error_naming_the_field(table: str, named: str) -> None:
    doc = tomllib.loads(table + "\n" + ACCOUNTS)  # a top-level key goes before the first table
    with pytest.raises(ConfigError) as e:
        parse_groups(doc.get("groups"), NAMES)
    assert str(e.value).startswith(named), str(e.value)


def test_a_strategy_loads_the_groups_without_any_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Given an accounts file with a group and an environment with none of its secret variables
    path = tmp_path / "accounts.toml"
    path.write_text(ACCOUNTS + FAMILY)
    for var in ("K_PASSWORD", "K_TOTP", "K_SECRET", "A_PASSWORD", "A_TOTP", "F_PASSWORD", "F_TOTP", "F_SECRET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("BROKERGATE_ACCOUNTS", str(path))
    bg_settings.settings.cache_clear()
    bg_settings.accounts.cache_clear()
    try:
        # When the process reads its groups, Then they are there, and a re-read of the file follows it
        assert bg_groups.group("family").accounts == NAMES
        with pytest.raises(ConfigError, match="group 'nosuch' is not in the accounts file"):
            bg_groups.group("nosuch")
        path.write_text(ACCOUNTS + '\n[groups.pair]\naccounts = ["kite1", "angel1"]\n')
        bg_settings.accounts.cache_clear()
        assert list(bg_groups.groups()) == ["pair"]
    finally:
        bg_settings.settings.cache_clear()
        bg_settings.accounts.cache_clear()


def test_the_example_accounts_file_has_a_group_that_parses() -> None:
    text = (REPO / "accounts.example.toml").read_text()
    doc = tomllib.loads(text)
    got = load_groups(REPO / "accounts.example.toml", list(doc["accounts"]))
    assert got and all(g.accounts for g in got.values())
