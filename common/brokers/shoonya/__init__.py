"""Finvasia Shoonya (Noren OMS): ``BROKER`` names its parts (:class:`common.brokers.contracts.Broker`)."""

from common.brokers.contracts import Broker
from common.brokers.shoonya import errors, feed, instruments, login, spec, updates
from common.brokers.shoonya.rest import Adapter

__all__ = ["BROKER"]

BROKER = Broker(spec=spec.SPEC, rest=Adapter, login=login, feed=feed, updates=updates,
                instruments=instruments, errors=errors)
