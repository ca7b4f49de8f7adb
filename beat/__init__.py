"""The RedBeat schedule: daily login per account, instrument refresh, the order sweeper."""
