"""Zerodha Kite Connect v3."""
