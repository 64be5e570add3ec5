"""Exporters: alerts as JSONL, CSV, syslog (RFC 5424) and ECS NDJSON, and live sinks.

`schema` holds the one column table; each format module turns an `Alert` into a line;
`sinks` writes them to rotating files or syslog for the daemon. Nothing here touches the store.
"""
