"""Pure parts of the login: TOTP timing, checksums, expiry, redirects, instrument parsing."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pyotp
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common import totp
from common.brokers.angel import instruments as angel_instruments
from common.brokers.angel import login as angel_login
from common.brokers.kite import instruments as kite_instruments
from common.brokers.kite import login as kite_login
from tests.paths import KITE_FIXTURES

IST = ZoneInfo("Asia/Kolkata")
SECRET = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
FIXTURES = KITE_FIXTURES


def ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def test_totp_code_in_the_middle_of_a_step_does_not_wait() -> None:
    clock = FakeClock(1_000_000_020.0 - (1_000_000_020.0 % 30) + 10)  # 10 s into a step
    code = totp.code(SECRET, clock=clock, sleep=clock.sleep)
    assert clock.slept == []
    assert code == pyotp.TOTP(SECRET).at(clock.t)


@pytest.mark.parametrize("left_s", [1.99, 0.5, 0.001])
def test_totp_code_near_the_end_of_a_step_waits_for_the_next(left_s: float) -> None:
    step_start = 1_000_000_020.0 - (1_000_000_020.0 % 30)
    clock = FakeClock(step_start + 30 - left_s)
    code = totp.code(SECRET, clock=clock, sleep=clock.sleep)
    assert len(clock.slept) == 1 and clock.slept[0] == pytest.approx(left_s + 0.01, abs=1e-6)
    assert code == pyotp.TOTP(SECRET).at(step_start + 30)


def test_totp_rejects_a_secret_that_is_not_base32() -> None:
    with pytest.raises(ValueError):
        totp.code("not base32 !!", clock=lambda: 1_000_000_000.0, sleep=lambda s: None)


def test_kite_checksum_is_sha256_of_key_token_secret() -> None:
    import hashlib

    assert kite_login.checksum("k", "rt", "s") == hashlib.sha256(b"krts").hexdigest()


def test_kite_request_token_is_read_from_the_redirect_target() -> None:
    assert kite_login.request_token_from("http://app.example/cb?request_token=abc&action=login") == "abc"
    assert kite_login.request_token_from("/connect/finish?api_key=x&sess_id=y") is None


@pytest.mark.parametrize(
    ("issued", "expires"),
    [
        (datetime(2026, 11, 25, 8, 45, tzinfo=IST), datetime(2026, 11, 26, 6, 0, tzinfo=IST)),
        (datetime(2026, 11, 25, 23, 59, tzinfo=IST), datetime(2026, 11, 26, 6, 0, tzinfo=IST)),
        (datetime(2026, 11, 26, 2, 0, tzinfo=IST), datetime(2026, 11, 26, 6, 0, tzinfo=IST)),
        (datetime(2026, 11, 26, 6, 0, tzinfo=IST), datetime(2026, 11, 27, 6, 0, tzinfo=IST)),
    ],
)
def test_kite_tokens_expire_at_the_next_0600_ist(issued: datetime, expires: datetime) -> None:
    assert kite_login.token_expiry_ms(ms(issued)) == ms(expires)


@pytest.mark.parametrize(
    ("issued", "expires"),
    [
        (datetime(2026, 11, 25, 8, 45, tzinfo=IST), datetime(2026, 11, 26, 0, 0, tzinfo=IST)),
        (datetime(2026, 11, 25, 0, 0, 1, tzinfo=IST), datetime(2026, 11, 26, 0, 0, tzinfo=IST)),
    ],
)
def test_angel_sessions_end_at_midnight_ist(issued: datetime, expires: datetime) -> None:
    assert angel_login.token_expiry_ms(ms(issued)) == ms(expires)


def test_kite_csv_parses_into_generic_instruments() -> None:
    text = (FIXTURES / "instruments_nse.csv").read_text()
    items = {i.key: i for i in kite_instruments.parse_csv(text)}
    assert len(items) > 10
    some = next(iter(items.values()))
    assert some.exchange == "NSE" and some.token.isdigit() and some.tick_size == Decimal("0.05")
    assert some.broker_symbol == some.symbol
    csv = (
        "instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,"
        "instrument_type,segment,exchange\n"
        "408065,1594,INFY,INFOSYS,0.0,,0.0,0.05,1,EQ,NSE,NSE\n"
        "256265,1001,NIFTY 50,NIFTY 50,0.0,,0.0,0.0,0,EQ,INDICES,NSE\n"
        "12345,6,NIFTY24DECFUT,NIFTY,0.0,2024-12-26,0.0,0.1,25,FUT,NFO-FUT,NFO\n"
    )
    got = {i.key: i for i in kite_instruments.parse_csv(csv)}
    assert got["NSE:INFY"].token == "408065" and got["NSE:INFY"].tick_size == Decimal("0.05")
    assert got["NSE:NIFTY 50"].instrument_type == "INDEX" and got["NSE:NIFTY 50"].tick_size > 0
    fut = got["NFO:NIFTY:2024-12-26:FUT"]  # a future takes the generic key (tests/derivatives)
    assert (fut.lot_size, fut.tick_size, fut.broker_symbol) == (25, Decimal("0.1"), "NIFTY24DECFUT")


def test_angel_scrip_master_strips_eq_and_converts_paise() -> None:
    rows = [
        {"token": "1594", "symbol": "INFY-EQ", "name": "INFY", "expiry": "", "strike": "-1.000000",
         "lotsize": "1", "instrumenttype": "", "exch_seg": "NSE", "tick_size": "5.000000"},
        {"token": "99926000", "symbol": "Nifty 50", "name": "NIFTY", "expiry": "", "strike": "0.000000",
         "lotsize": "1", "instrumenttype": "AMXIDX", "exch_seg": "NSE", "tick_size": "0.000000"},
        {"token": "4668", "symbol": "CENTRALBK-BE", "name": "CENTRALBK", "expiry": "", "strike": "-1",
         "lotsize": "1", "instrumenttype": "", "exch_seg": "NSE", "tick_size": "1.000000"},
    ]  # fmt: skip
    got = {i.key: i for i in angel_instruments.parse_rows(rows)}
    infy = got["NSE:INFY"]
    assert (infy.token, infy.broker_symbol, infy.tick_size) == ("1594", "INFY-EQ", Decimal("0.05"))
    assert got["NSE:NIFTY 50"].instrument_type == "INDEX"
    assert got["NSE:CENTRALBK-BE"].tick_size == Decimal("0.01")


def test_angel_scrip_master_url_is_public_for_the_real_broker_and_local_for_paper() -> None:
    from dataclasses import replace

    from common.settings import parse_accounts

    acct = parse_accounts(
        '[accounts.a]\nbroker = "angel"\nuser_id = "A1"\napi_key = "k"\n'
        'password = "env:P"\ntotp_secret = "env:T"\n',
        environ={"P": "pw-value", "T": SECRET},
    )["a"]
    assert angel_instruments.url(acct) == angel_instruments.PUBLIC_URL
    paper = replace(acct, rest_url="http://127.0.0.1:8700")
    assert angel_instruments.url(paper) == "http://127.0.0.1:8700/OpenAPI_File/files/OpenAPIScripMaster.json"


@given(
    base=st.from_regex(r"[A-Z][A-Z0-9&]{0,15}", fullmatch=True),
    series=st.sampled_from(["-EQ", "-BE", "-BL", ""]),
    paise=st.integers(min_value=1, max_value=10_000),
    lot=st.integers(min_value=1, max_value=5000),
)
def test_angel_rows_map_to_generic_instruments(base: str, series: str, paise: int, lot: int) -> None:
    row = {"token": "7", "symbol": base + series, "name": base, "lotsize": str(lot), "instrumenttype": "",
           "exch_seg": "NSE", "tick_size": f"{paise:.6f}"}  # fmt: skip
    (inst,) = angel_instruments.parse_rows([row])
    assert inst.symbol == (base if series == "-EQ" else base + series)
    assert inst.broker_symbol == base + series
    assert inst.tick_size == Decimal(paise) / 100 and inst.lot_size == lot
    assert type(inst).from_dict(inst.to_dict()) == inst
