"""Fyers API v3: REST, the HSM data socket and the order socket, binary frames, order bodies."""
