"""Zerodha Kite Connect v3.

``BROKER`` names its parts (:class:`common.brokers.contracts.Broker`)."""

from common.brokers.contracts import Broker
from common.brokers.kite import errors, feed, instruments, login, spec, updates
from common.brokers.kite.rest import Adapter

__all__ = ["BROKER"]

BROKER = Broker(spec=spec.SPEC, rest=Adapter, login=login, feed=feed, updates=updates,
                instruments=instruments, errors=errors)
