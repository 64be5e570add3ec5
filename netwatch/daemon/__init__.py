"""The background service: a plain loop that ticks the engine, stores alerts, serves snapshots.

`service.Service` is the loop, `server.SnapshotServer` the Unix socket, `client.DaemonFeed` the
dashboard's feed from it, `notify.Notifier` sd_notify, `metrics.Metrics` Prometheus.
"""
