"""The SQLite store: alerts, flow summaries and first-seen facts, in WAL mode."""
