"""The feed process (``python -m feed``): broker WebSockets → decoded ticks → Redis pub/sub.

Modules: :mod:`feed.session` (one socket), :mod:`feed.watchdog`, :mod:`feed.publisher`,
:mod:`feed.shard`, :mod:`feed.supervisor` (all accounts); the postback receiver and the
order-update path (:mod:`feed.postback`, :mod:`feed.orderupdates`, :mod:`feed.order_socket`)
live here too. Strategies use :mod:`common.ticks`, never this package.
"""
