"""Exporters: alerts as JSONL, CSV, syslog (RFC 5424) and ECS NDJSON, flow logs, and live sinks.

`schema` holds the one column table; each format module turns an `Alert` into a line;
`flowlog` decides when a flow record is due, and `jsonl` and `ecs` format those too; `sinks`
writes them to rotating files or syslog for the daemon. Nothing here touches the store.
"""
