"""The paper broker: a local stand-in for Zerodha Kite Connect, Angel One SmartAPI, Fyers API v3
and Finvasia Shoonya that the official SDKs accept by changing only their root URL. Stands
alone: imports nothing from `common/` nor from the SDKs.

Shared core: `state` (what the broker knows), `users`, `universe` (instruments), `prices` (the
price walk), `orders` and `matching` (the exchange), `faults`, `requestlog`, `caps` (sliding
windows), `gateway` (the request pipeline: auth, faults, caps, log, connection drop), `sockets`
and `tickrate` (what every WebSocket shares), `control` (`/_paper`), `server` (uvicorn
protocol), `app`, `launch` (start it as a child process) and `__main__` (`python -m paper`).

One package per dialect, with the same module names: `<broker>/rest.py` (REST at the broker's
paths), `<broker>/ws.py` (its sockets), `<broker>/payloads.py` (its order bodies) and, for a
binary feed, `<broker>/encode.py`; Kite also has `kite/postbacks.py`.
"""
