"""First-seen state that survives restarts: `detect.novelty.FirstSeenStore` on the facts table.

The rules `process.first_connection` and `geo.new_country` call `get`/`put` while they
evaluate a tick; `put` only updates memory and queues the row. The daemon commits the queue
in the same transaction as that tick's alerts (`Store.save_tick`), so after a crash either
both the alert and its fact are stored or neither is, and the alert fires again rather than
being lost. Keys are the detector's (`program:<exe>`, `country:<exe>|CC`, ...).
"""

from __future__ import annotations

from netwatch.store.sqlite import Store

KIND = "first_seen"


class StoredFirstSeen:
    """Loaded once from the store; new keys are held until `take_pending`."""

    def __init__(self, store: Store) -> None:
        self._seen: dict[str, float] = dict(store.facts(KIND))
        self._pending: dict[str, float] = {}

    def get(self, key: str) -> float | None:
        """When `key` was first seen, or None."""
        return self._seen.get(key)

    def put(self, key: str, when: float) -> None:
        """Record `key` (the first time only) and queue it for the next commit."""
        if key not in self._seen:
            self._seen[key] = when
            self._pending[key] = when

    def take_pending(self) -> list[tuple[str, float]]:
        """The keys learned since the last call; the caller commits them."""
        rows = list(self._pending.items())
        self._pending.clear()
        return rows

    def __len__(self) -> int:
        return len(self._seen)
