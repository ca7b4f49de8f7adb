"""Finvasia Shoonya (Noren OMS): the adapter package (see ``common/brokers/__init__.py``)."""
