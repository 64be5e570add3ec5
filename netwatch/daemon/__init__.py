"""The background service: a plain loop that ticks the engine, stores alerts, serves snapshots."""
