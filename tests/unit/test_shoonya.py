"""Shoonya's pure modules: translation, the one error mapping, the JSON tick decoder (its delta
state, its exact prices), order-update parsing and the feed dialect's messages."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.brokers.shoonya import codec, errors, feed, translate, updates
from common.errors import Ambiguous, BrokerUnavailable, LoginFailed, OrderRejected, RateLimited, TokenExpired
from common.models import Instrument, Order, OrderState

SBIN = Instrument("NSE", "SBIN", "3045", broker_symbol="SBIN-EQ")


# ----- translate --------------------------------------------------------------------------------
def test_order_values_use_noren_names_and_carry_the_tag_in_remarks() -> None:
    o = Order(account="s1", exchange="NSE", symbol="SBIN", side="SELL", quantity=5, order_type="SL",
              price="801.05", trigger_price="801", product="DELIVERY", client_order_id="abc123")  # fmt: skip
    v = translate.order_values(o, SBIN, "FA12345")
    assert v == {
        "ordersource": "API", "uid": "FA12345", "actid": "FA12345", "trantype": "S", "prd": "C", "exch": "NSE",
        "tsym": "SBIN-EQ", "qty": "5", "dscqty": "0", "prctyp": "SL-LMT", "prc": "801.05", "ret": "DAY",
        "remarks": "abc123", "amo": "NO", "trgprc": "801",
    }  # fmt: skip
    market = Order(account="s1", exchange="NSE", symbol="M&M", side="BUY", quantity=1, validity="IOC")
    mv = translate.order_values(market, None, "FA1")
    assert (mv["prctyp"], mv["prc"], mv["prd"], mv["ret"], mv["tsym"]) == ("MKT", "0", "I", "IOC", "M%26M-EQ")
    assert "trgprc" not in mv
    body = translate.jdata(mv, "tok")
    assert body.startswith('jData={"ordersource": "API"') and body.endswith("&jKey=tok")


def test_modify_cancel_and_book_translation() -> None:
    o = Order(account="s1", exchange="NSE", symbol="SBIN", side="BUY", quantity=2, order_type="LIMIT", price="10")
    assert translate.modify_values(o, "99", SBIN, "FA1") == {
        "ordersource": "API", "uid": "FA1", "actid": "FA1", "norenordno": "99", "exch": "NSE", "tsym": "SBIN-EQ",
        "qty": "2", "prctyp": "LMT", "prc": "10", "ret": "DAY",
    }  # fmt: skip
    assert translate.cancel_values("99", "FA1") == {"ordersource": "API", "uid": "FA1", "norenordno": "99"}
    assert translate.order_id_of({"stat": "Ok", "norenordno": "1"}) == "1"
    assert translate.order_id_of({"stat": "Ok", "result": "2"}) == "2"
    rows = [
        {"norenordno": "1", "status": "COMPLETE", "qty": "3", "fillshares": "3", "avgprc": "800.05", "remarks": "t1"},
        {"norenordno": "2", "status": "WEIRD", "remarks": "t2"},
        {"norenordno": "3", "status": "WEIRD"},
    ]
    got = translate.book_to_updates("s1", rows)
    assert [(u.client_order_id, u.state) for u in got] == [("t1", OrderState.COMPLETE), ("t2", OrderState.UNKNOWN)]
    assert got[0].average_price == Decimal("800.05") and got[0].filled_quantity == 3


# ----- errors -----------------------------------------------------------------------------------
def _not_ok(emsg: str) -> dict[str, str]:
    return {"stat": "Not_Ok", "emsg": emsg}


@pytest.mark.parametrize(("status", "emsg", "expected"), [
    (200, "Session Expired : Invalid Session Key", TokenExpired),
    (200, "Invalid Input : Wrong Password", OrderRejected),
    (200, "Rejected : ORA:Order not found", OrderRejected),
    (200, "Rejected : ORA:Order not found to Cancel", OrderRejected),
    (200, 'Error Occurred : 2 "invalid input"', OrderRejected),
    (200, 'Error Occurred : 5 "no data"', OrderRejected),
    (200, "No Data :  ", OrderRejected),
    (200, "Server Timeout :  ", Ambiguous),
    (200, "Rate limit exceeded : too many requests", RateLimited),
    (429, "Rate limit exceeded : too many requests", RateLimited),
    (503, "Service Unavailable : try after some time", BrokerUnavailable),
    (503, "anything", BrokerUnavailable),
    (502, "anything", Ambiguous),  # a proxy may answer 502 after forwarding (issue 15 item 14)
    (200, "Something Noren never said : x", OrderRejected),  # a refusal we do not know: final
    (500, "Something Noren never said : x", Ambiguous),  # with a 5xx the OMS may have acted
])  # fmt: skip
def test_every_noren_message_kind_maps_to_one_type(status: int, emsg: str, expected: type) -> None:
    assert type(errors.map_error(status, _not_ok(emsg))) is expected


def test_unreadable_answers_and_login_refusals() -> None:
    assert type(errors.map_error(200, None, "<html>")) is Ambiguous
    assert type(errors.map_error(504, None, "")) is Ambiguous
    assert type(errors.map_error(503, None, "")) is BrokerUnavailable
    assert type(errors.map_error(429, None, "")) is RateLimited
    assert type(errors.map_error(200, _not_ok("Invalid Input : Invalid OTP"), during_login=True)) is LoginFailed
    assert type(errors.map_error(200, _not_ok("Server Timeout : "), during_login=True)) is BrokerUnavailable
    assert type(errors.map_error(429, _not_ok("Rate limit exceeded : x"), during_login=True)) is RateLimited
    assert errors.emsg_kind('Error Occurred : 5 "no data"') == errors.NO_DATA


def test_messages_never_carry_a_token() -> None:
    e = errors.map_error(200, _not_ok("Session Expired : Invalid Session Key"), "jKey=secret")
    assert "secret" not in str(e)


# ----- codec ------------------------------------------------------------------------------------
def _table(modes: dict[str, str]) -> codec.Table:
    return feed.symbol_table({k: ("NSE", f"S{k[4:]}") for k in modes}, modes)


def test_deltas_apply_to_the_last_snapshot() -> None:
    t = _table({"NSE|3045": "quote"})
    tk = {"t": "tk", "e": "NSE", "tk": "3045", "ts": "SBIN-EQ", "lp": "800.05", "o": "799.00", "h": "801.00",
          "l": "798.10", "c": "797.55", "ap": "799.96", "v": "1000", "ltq": "5", "bp1": "800.00", "bq1": "7",
          "sp1": "800.10", "sq1": "9", "ft": "1700000000"}  # fmt: skip
    (a,), bad = codec.decode_message(json.dumps(tk), t, 11)
    assert bad == 0 and a.mode == "quote" and a.received_ns == 11
    assert (a.last_price, a.open, a.high, a.low, a.close, a.average_price) == (80005, 79900, 80100, 79810, 79755, 79996)
    assert (a.volume, a.last_quantity, a.bid_price, a.bid_quantity, a.ask_price, a.ask_quantity) == (
        1000, 5, 80000, 7, 80010, 9)
    assert a.exchange_ts_ms == 1_700_000_000_000 and a.bids == ()
    (b,), _ = codec.decode_message({"t": "tf", "e": "NSE", "tk": "3045", "lp": "800.10", "v": "1005"}, t, 12)
    assert (b.last_price, b.volume, b.open, b.bid_price) == (80010, 1005, 79900, 80000)
    # a reload of the subscriptions keeps the state; an unsubscribed key decodes to nothing
    t2 = feed.update_table(t, {"NSE|3045": ("NSE", "SBIN")}, {"NSE|3045": "ltp"})
    assert t2 is t
    (c,), _ = codec.decode_message({"t": "tf", "e": "NSE", "tk": "3045", "lp": "800.15"}, t, 13)
    assert (c.mode, c.last_price, c.volume) == ("ltp", 80015, 0)
    assert codec.decode_message({"t": "tf", "e": "NSE", "tk": "1", "lp": "1"}, t, 0) == ([], 0)


def test_depth_is_full_mode_and_touchline_of_a_full_key_is_quote() -> None:
    t = _table({"NSE|1594": "full"})
    dk: dict[str, Any] = {"t": "dk", "e": "NSE", "tk": "1594", "lp": "1500.00"}
    for i in range(1, 6):
        dk.update({f"bp{i}": f"{1500 - i}.00", f"bq{i}": str(i), f"bo{i}": str(10 + i),
                   f"sp{i}": f"{1500 + i}.00", f"sq{i}": str(2 * i), f"so{i}": str(20 + i)})  # fmt: skip
    (d,), _ = codec.decode_message(dk, t, 0)
    assert d.mode == "full" and d.bids[:3] == (149900, 1, 11) and d.asks[-3:] == (150500, 10, 25)
    (q,), _ = codec.decode_message({"t": "tf", "e": "NSE", "tk": "1594", "lp": "1501.00"}, t, 0)
    assert q.mode == "quote" and q.bids == ()


@pytest.mark.parametrize("message", [
    "not json", '{"t":"tf","e":"NSE"', "[]", '{"t":"tf","tk":"3045"}', '{"t":"tk","e":"NSE","tk":"3045","lp":"abc"}',
])  # fmt: skip
def test_malformed_messages_are_counted_and_skipped(message: str) -> None:
    t = _table({"NSE|3045": "quote"})
    assert codec.decode_message(message, t, 0) == ([], 1)


def test_a_bad_delta_keeps_the_last_good_state() -> None:
    t = _table({"NSE|3045": "quote"})
    codec.decode_message({"t": "tk", "e": "NSE", "tk": "3045", "lp": "1.00", "v": "1"}, t, 0)
    assert codec.decode_message({"t": "tf", "e": "NSE", "tk": "3045", "lp": "x"}, t, 0) == ([], 1)
    (ok,), _ = codec.decode_message({"t": "tf", "e": "NSE", "tk": "3045", "v": "2"}, t, 0)
    assert (ok.last_price, ok.volume) == (100, 2)


PRICE = st.decimals(min_value=Decimal("-99999999.99"), max_value=Decimal("99999999.99"), places=2)


@settings(max_examples=300, deadline=None)
@given(PRICE, st.sampled_from(["{:.2f}", "{:.1f}", "{:.0f}", "{}"]))
def test_prices_convert_exactly(price: Decimal, fmt: str) -> None:
    text = fmt.format(price) if fmt != "{}" else str(price)
    assert codec.to_units(text, 100) == int((Decimal(text) * 100).to_integral_value())


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["lp", "o", "h", "l", "c", "ap", "bp1", "sp1"]), PRICE.map(lambda d: f"{d:.2f}")),
       st.dictionaries(st.sampled_from(["v", "ltq", "bq1", "sq1", "oi"]), st.integers(0, 10**12).map(str)))  # fmt: skip
def test_random_touchline_messages_decode_to_their_exact_values(prices: dict[str, str], qtys: dict[str, str]) -> None:
    t = _table({"NSE|3045": "quote"})
    msg = {"t": "tk", "e": "NSE", "tk": "3045", "lp": "1.00", **prices, **qtys}
    (tick,), bad = codec.decode_message(json.dumps(msg), t, 0)
    assert bad == 0
    names = {"lp": "last_price", "o": "open", "h": "high", "l": "low", "c": "close", "ap": "average_price",
             "bp1": "bid_price", "sp1": "ask_price", "v": "volume", "ltq": "last_quantity", "bq1": "bid_quantity",
             "sq1": "ask_quantity", "oi": "oi"}  # fmt: skip
    for field, value in msg.items():
        if field in names:
            want = int(Decimal(value) * 100) if field in prices or field == "lp" else int(value)
            assert getattr(tick, names[field]) == want, field


# ----- updates ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("status", "report", "state"), [
    ("PENDING", "PendingNew", OrderState.OPEN),
    ("OPEN", "New", OrderState.OPEN),
    ("TRIGGER_PENDING", "New", OrderState.OPEN),
    ("COMPLETE", "Fill", OrderState.COMPLETE),
    ("CANCELED", "Canceled", OrderState.CANCELLED),
    ("REJECTED", "Rejected", OrderState.REJECTED),
    ("Open", "", OrderState.OPEN),
    ("REJECT", "", OrderState.REJECTED),
    ("", "Canceled", OrderState.CANCELLED),
    ("New", "", OrderState.OPEN),
    ("INVALID_STATUS_TYPE", "", None),
    ("", "INVALID_REPORT_TYPE", None),
])  # fmt: skip
def test_status_table(status: str, report: str, state: OrderState | None) -> None:
    assert updates.status_to_state(status, report) == state


def test_om_messages_become_updates_and_other_messages_do_not() -> None:
    om = {"t": "om", "norenordno": "24120200001", "status": "OPEN", "reporttype": "Fill", "qty": "10",
          "fillshares": "10", "avgprc": "800.05", "remarks": "tag1", "exch_tm": "02-12-2024 10:00:00"}  # fmt: skip
    u = updates.parse_message("s1", om, "socket")
    assert u is not None and u.state is OrderState.COMPLETE and u.average_price == Decimal("800.05")
    assert (u.client_order_id, u.filled_quantity, u.pending_quantity, u.source) == ("tag1", 10, 0, "socket")
    partial = updates.parse_message("s1", {**om, "fillshares": "4"}, "socket")
    assert partial is not None and partial.state is OrderState.OPEN and partial.pending_quantity == 6
    rejected = updates.parse_message("s1", {**om, "status": "REJECTED", "rejreason": "RMS: margin"}, "socket")
    assert rejected is not None and rejected.message == "RMS: margin"
    for other in ({"t": "ck", "s": "OK"}, {"t": "tk", "e": "NSE"}, {"t": "ok"}, "text"):
        assert updates.parse_message("s1", other, "socket") is None  # type: ignore[arg-type]
    assert updates.HAS_POSTBACK is False and updates.ORDER_SOCKET is False


# ----- the feed dialect -------------------------------------------------------------------------
def test_dialect_messages() -> None:
    assert feed.key_of(SBIN) == "NSE|3045"
    login = [json.loads(m) for m in feed.login_messages("vc", "FA1", "tok", "tok")]
    assert login == [{"t": "c", "uid": "FA1", "actid": "FA1", "susertoken": "tok", "source": "API"},
                     {"t": "o", "actid": "FA1"}]
    subs = [json.loads(m) for m in feed.subscribe_messages({"ltp": ["NSE|2"], "quote": ["NSE|1"], "full": ["NSE|3"]})]
    assert subs == [{"t": "t", "k": "NSE|1#NSE|2"}, {"t": "d", "k": "NSE|3"}]
    unsubs = [json.loads(m) for m in feed.unsubscribe_messages({"quote": ["NSE|1"], "full": ["NSE|3"]})]
    assert unsubs == [{"t": "u", "k": "NSE|1"}, {"t": "ud", "k": "NSE|3"}]
    assert feed.change_mode_messages({"ltp": ["NSE|1"]}, {"quote": ["NSE|1"]}) == []
    moved = [json.loads(m) for m in feed.change_mode_messages({"ltp": ["NSE|1"]}, {"full": ["NSE|1"]})]
    assert moved == [{"t": "u", "k": "NSE|1"}, {"t": "d", "k": "NSE|1"}]
    many = feed.subscribe_messages({"quote": [f"NSE|{i}" for i in range(450)]})
    assert len(many) == 3


def test_classify_text() -> None:
    assert feed.classify_text('{"t":"tk","e":"NSE","tk":"1"}')[0] == "ticks"
    assert feed.classify_text('{"t":"om","norenordno":"1"}')[0] == "order"
    assert feed.classify_text('{"t":"ck","s":"OK"}')[0] == "other"
    assert feed.classify_text('{"t":"ck","s":"NOT_OK","emsg":"x"}')[0] == "refused"
    assert feed.classify_text('{"t":"ok"}')[0] == "other"
    assert feed.classify_text("garbage") == ("ticks", "garbage")  # the decoder counts it malformed


# ----- the symbol master ------------------------------------------------------------------------
def test_symbol_files_parse_to_generic_instruments() -> None:
    from common.brokers.shoonya.instruments import parse_text

    nse = ("Exchange,Token,LotSize,Symbol,TradingSymbol,Instrument,TickSize,\n"
           "NSE,3045,1,SBIN,SBIN-EQ,EQ,0.05,\nNSE,26000,1,NIFTY,Nifty 50,INDEX,0.05,\n"
           "NSE,99999,1,ABC,ABC-BE,BE,0.01,\nNSE,,1,BAD,BAD-EQ,EQ,0.05,\n")  # fmt: skip
    got = {i.symbol: i for i in parse_text(nse)}
    assert set(got) == {"SBIN", "NIFTY 50", "ABC-BE"}
    assert (got["SBIN"].token, got["SBIN"].broker_symbol, got["SBIN"].tick_size) == ("3045", "SBIN-EQ", Decimal("0.05"))
    assert got["NIFTY 50"].instrument_type == "INDEX" and got["ABC-BE"].tick_size == Decimal("0.01")
    nfo = ("Exchange,Token,LotSize,Symbol,TradingSymbol,Expiry,Instrument,OptionType,StrikePrice,TickSize,\n"
           "NFO,35001,75,NIFTY,NIFTY26DEC24F,26-DEC-2024,FUTIDX,XX,0,0.05,\n")  # fmt: skip
    (fut,) = parse_text(nfo)  # a contract: its generic key, Shoonya's symbol kept (tests/derivatives)
    assert (fut.exchange, fut.symbol, fut.lot_size, fut.instrument_type) == ("NFO", "NIFTY:2024-12-26:FUT", 75, "FUTIDX")
    assert (fut.kind, fut.broker_symbol) == ("future", "NIFTY26DEC24F")
