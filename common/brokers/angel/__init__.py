"""Angel One SmartAPI.

``BROKER`` names its parts (:class:`common.brokers.contracts.Broker`)."""

from common.brokers.angel import errors, feed, instruments, login, spec, updates
from common.brokers.angel.rest import Adapter
from common.brokers.contracts import Broker

__all__ = ["BROKER"]

BROKER = Broker(spec=spec.SPEC, rest=Adapter, login=login, feed=feed, updates=updates,
                instruments=instruments, errors=errors)
