"""The paper broker: a local stand-in for Zerodha Kite Connect and Angel One SmartAPI that the
official SDKs accept by changing only their root URL. Stands alone: imports nothing from
`common/` nor from the SDKs.

Modules: `state` (shared state, the contract with the WebSocket side), `universe` (instruments),
`matching` (orders and fills), `caps` (sliding-window caps), `gateway` (the request pipeline:
auth, faults, caps, log, connection drop), `kite_rest` / `angel_rest` (the two REST dialects),
`postbacks` (Kite postbacks), `control` (`/_paper`), `server` (uvicorn protocol), `app`, and
`__main__` (`python -m paper`). WebSocket side: `ws_kite`, `ws_angel`, `encode`, `tickrate`, `sockets`.
"""
