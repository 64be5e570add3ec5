"""Snapshot -> JSON line for socket clients, encoding each unchanged flow only once.

The engine hands back last tick's `EnrichedFlow` object for a flow that did not change, so
the text of such a flow is last tick's text. `SnapshotEncoder` keeps, for the flows of the
latest snapshot only (so it stays bounded), the encoded text by object identity (the cache
holds the object, so its id cannot be reused while cached) and splices the texts into the
snapshot record. The result is byte-for-byte `codec.dumps(snapshot)`: the tests hold it to that.
"""

from __future__ import annotations

import itertools
import json
import operator
from dataclasses import replace
from typing import cast

from netwatch import codec
from netwatch.model import EnrichedFlow, Snapshot

_SEPARATORS = (",", ":")
_NONES = itertools.repeat(None)


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=_SEPARATORS, ensure_ascii=False)


class SnapshotEncoder:
    """Encodes snapshots as `codec.dumps` does, reusing the text of unchanged flows."""

    def __init__(self) -> None:
        self._texts: dict[int, str] = {}
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
        flows = snap.flows
        parts: list[str | None] = list(map(self._texts.get, map(id, flows)))  # in C
        misses = list(itertools.compress(range(len(parts)), map(operator.is_, parts, _NONES)))
        for i in misses:
            parts[i] = _dumps(codec.flow_to_dict(flows[i]))
        self.encoded = len(misses)
        texts = cast(list[str], parts)
        joined = ",".join(texts)
        if remember:
            self._texts = dict(zip(map(id, flows), texts, strict=True))
            self._joined = (flows, joined)  # keeps them alive: an id in `_texts` is that flow
        return joined
