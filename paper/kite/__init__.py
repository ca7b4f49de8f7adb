"""Kite Connect v3: REST, the ticker, binary tick frames, order bodies and postbacks."""
