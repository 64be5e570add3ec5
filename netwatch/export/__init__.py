"""Exporters: alerts as JSONL, CSV, syslog (RFC 5424) and ECS NDJSON."""
