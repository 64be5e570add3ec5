"""The SQLite store: alerts, flow summaries, first-seen facts and usage history, in WAL mode.

`Store` is the one writer (the daemon, `analyze --db`); `read_alerts` is the reader export uses,
`sqlite.read_usage` the one `netwatch history` and the dashboard's history screen use;
`retention.Pruner` prunes by age and size in the background.
"""

from netwatch.store.first_seen import StoredFirstSeen
from netwatch.store.retention import Pruner, Retention, prune
from netwatch.store.sqlite import (
    AlertQuery,
    Store,
    integrity_check,
    read_alerts,
    store_alerts,
)

__all__ = [
    "AlertQuery",
    "Pruner",
    "Retention",
    "Store",
    "StoredFirstSeen",
    "integrity_check",
    "prune",
    "read_alerts",
    "store_alerts",
]
