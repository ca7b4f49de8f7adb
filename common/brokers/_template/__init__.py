"""A new broker's starting point: every part of :class:`common.brokers.contracts.Broker`, stubbed.

Not registered (a configured broker must be in ``common.brokers.BROKER_NAMES``). To add a broker:

1. copy this package to ``common/brokers/<broker>/`` and fill in each module (its docstring
   says what the part must do; ``common/brokers/kite/`` is a complete example);
2. add a ``codec.py`` (the feed's decoder) and a ``translate.py`` (Order in, request out)
   where the broker needs them: pure functions, tested without I/O;
3. add the name to ``BROKER_NAMES`` and a dialect to the paper broker (``paper/``), so every
   end-to-end test runs against it;
4. ``make test``: mypy checks ``BROKER`` against the contracts, and
   ``tests/unit/test_broker_contracts.py`` calls every part on tiny inputs.
"""

from common.brokers._template import errors, feed, instruments, login, spec, updates
from common.brokers._template.rest import Adapter
from common.brokers.contracts import Broker

__all__ = ["BROKER"]

BROKER = Broker(spec=spec.SPEC, rest=Adapter, login=login, feed=feed, updates=updates,
                instruments=instruments, errors=errors)
