"""Many instruments over three sockets, and order updates, on the Kite ticker."""

from __future__ import annotations

import struct
import threading

import websocket
from kiteconnect import KiteConnect

from tests.paper_ws.helpers import WSBroker, wait_for
from tests.paper_ws.kite_client import TickerProbe


def test_three_sockets_each_stream_all_3000_instruments(broker: WSBroker) -> None:
    # Given one api_key's three sockets with 3,000 distinct instruments each, in quote mode
    # (the rate itself is measured by `make bench`, never asserted here)
    s = broker.kite_user()
    tokens = broker.kite_tokens(9000)
    url = f"{broker.ws_url}/kite-ticker?api_key={s.api_key}&access_token={s.access_token}"
    broker.ticks(paused=True)
    socks = [websocket.create_connection(url, timeout=5) for _ in range(3)]
    for i, ws in enumerate(socks):
        ws.send(f'{{"a":"subscribe","v":{tokens[i * 3000:(i + 1) * 3000]}}}')
    wait_for(lambda: len(broker.ticks()["sockets"]) >= 3, 5, "three sockets registered")
    counts = [0, 0, 0]
    done = [threading.Event() for _ in range(3)]

    def reader(i: int) -> None:
        ws = socks[i]
        while counts[i] < 3000:
            try:
                frame = ws.recv()
            except (websocket.WebSocketException, OSError):
                return  # shut down by the test
            if isinstance(frame, bytes) and len(frame) > 1:
                counts[i] += struct.unpack(">H", frame[:2])[0]
        done[i].set()

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    try:
        # When the clock steps (again, until the subscriptions have been read by the server)
        def stepped_until_all_streamed() -> bool:
            broker.ticks(steps=1)
            return all(d.wait(0.2) for d in done)

        # Then every socket carries a packet for each of its 3,000 instruments
        wait_for(stepped_until_all_streamed, 10, f"3,000 packets on each socket (got {counts})")
    finally:
        for ws in socks:
            ws.shutdown()  # no close handshake behind megabytes of queued frames


def test_order_update_reaches_the_ticker(broker: WSBroker) -> None:
    # Given a KiteTicker connected for a user
    s = broker.kite_user()
    probe = TickerProbe(s.api_key, s.access_token, f"{broker.ws_url}/kite-ticker").start()
    try:
        assert probe.connected.wait(5)
        # When that user places an order through the REST API
        kite = KiteConnect(api_key=s.api_key, access_token=s.access_token, root=broker.http_url)
        order_id = kite.place_order(
            variety="regular", exchange="NSE", tradingsymbol="INFY", transaction_type="BUY", quantity=1,
            product="CNC", order_type="LIMIT", price=1.0, tag="wsorder",
        )
        # Then on_order_update gets the order body
        update = wait_for(lambda: next((o for o in list(probe.orders) if o["order_id"] == order_id), None),
                          5, "the order update")
        assert update["tag"] == "wsorder" and update["tradingsymbol"] == "INFY"
        assert update["status"] in {"OPEN", "COMPLETE", "REJECTED"}
    finally:
        probe.stop()
