"""Snapshot -> JSON line for socket clients, encoding each unchanged flow only once.

The engine hands back last tick's `EnrichedFlow` object for a flow that did not change, so
the text of such a flow is last tick's text. `SnapshotEncoder` keeps, for the flows of the
latest snapshot only (so it stays bounded), the encoded text by object identity (the cache
holds the object, so its id cannot be reused while cached) and splices the texts into the
snapshot record. The result is byte-for-byte `codec.dumps(snapshot)`: the tests hold it to that.
"""

from __future__ import annotations

import json
from dataclasses import replace

from netwatch import codec
from netwatch.model import EnrichedFlow, Snapshot

_SEPARATORS = (",", ":")


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=_SEPARATORS, ensure_ascii=False)


class SnapshotEncoder:
    """Encodes snapshots as `codec.dumps` does, reusing the text of unchanged flows."""

    def __init__(self) -> None:
        self._texts: dict[int, tuple[EnrichedFlow, str]] = {}
        self.encoded = 0
        """Flows encoded by the last `encode` (the others came from the cache)."""
        self._joined: tuple[tuple[EnrichedFlow, ...] | None, str] = (None, "")
        """The flows of the last remembered `encode` and their joined texts."""

    def encode(self, snap: Snapshot, remember: bool = True) -> str:
        """The snapshot as one JSON line (no newline).

        `remember=False` encodes without replacing the cache (a greeting built from an older
        snapshot must not evict the texts of the current one).
        """
        head = codec.snapshot_to_dict(replace(snap, flows=(), alerts=()))
        del head["flows"], head["alerts"]
        alerts = _dumps([codec.alert_to_dict(a) for a in snap.alerts])
        flows = self._flows_text(snap, remember)
        return f'{_dumps(head)[:-1]},"flows":[{flows}],"alerts":{alerts}}}'

    def _flows_text(self, snap: Snapshot, remember: bool) -> str:
        """The flows' texts joined; last call's string when the flows are its very tuple."""
        if snap.flows is self._joined[0]:
            self.encoded = 0
            return self._joined[1]
        old = self._texts
        new: dict[int, tuple[EnrichedFlow, str]] = {}
        parts: list[str] = []
        encoded = 0
        for ef in snap.flows:
            hit = old.get(id(ef))
            if hit is not None and hit[0] is ef:
                text = hit[1]
            else:
                text = _dumps(codec.flow_to_dict(ef))
                encoded += 1
            new[id(ef)] = (ef, text)
            parts.append(text)
        self.encoded = encoded
        joined = ",".join(parts)
        if remember:
            self._texts = new
            self._joined = (snap.flows, joined)
        return joined
