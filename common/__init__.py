"""brokergate's shared core: settings, models, errors, Redis names, token store, limiter, broker adapters."""
