"""Angel One SmartAPI."""
