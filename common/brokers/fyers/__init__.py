"""Fyers API v3."""
