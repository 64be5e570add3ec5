"""Snapshot -> JSON line for socket clients, encoding each unchanged flow only once.

A flow with last tick's version (`EnrichedFlow.version`, docs/architecture.md section 4) has
last tick's values, so its text is last tick's text. `SnapshotEncoder` keeps, for the flows
of the latest snapshot only (so it stays bounded), the encoded text by version and splices
the texts into the snapshot record. The result is byte-for-byte `codec.dumps(snapshot)`:
the tests hold it to that.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import cast

from netwatch import codec
from netwatch.model import Snapshot
from netwatch.model.versions import Version, keep, missing, recall, versions

_SEPARATORS = (",", ":")
FLOWS_FIELD = b',"flows":'
ALERTS_FIELD = b',"alerts":'
"""A snapshot line is the head's fields, then these two, alerts last (`DaemonFeed` relies
on that to find the flows' text without decoding the line)."""


def _dumps(obj: object) -> str:
    return json.dumps(obj, separators=_SEPARATORS, ensure_ascii=False)


class SnapshotEncoder:
    """Encodes snapshots as `codec.dumps` does, reusing the text of unchanged flows."""

    def __init__(self) -> None:
        self._texts: dict[Version, bytes] = {}
        self.encoded = 0
        """Flows encoded by the last `encode` (the others came from the cache)."""
        self._joined: tuple[list[Version] | None, bytes] = (None, b"")
        """The flow versions of the last remembered `encode` (None: some flow was not
        numbered) and their joined texts."""

    def encode(self, snap: Snapshot, remember: bool = True) -> str:
        """The snapshot as one JSON line (no newline): `line` as text."""
        return self.line(snap, remember)[:-1].decode("utf-8")

    def line(self, snap: Snapshot, remember: bool = True) -> bytes:
        """The snapshot as one JSON line, UTF-8, newline included: what clients are sent.

        Built as bytes from the cached UTF-8 of the flows, so an unchanged tick copies its
        flows' text once (a 10,000-flow snapshot is ~14 MB) instead of encoding it again.
        `remember=False` encodes without replacing the cache (a greeting built from an older
        snapshot must not evict the texts of the current one).
        """
        head = codec.snapshot_to_dict(replace(snap, flows=(), alerts=()))
        del head["flows"], head["alerts"]
        alerts = _dumps([codec.alert_to_dict(a) for a in snap.alerts])
        return b"".join(
            (
                _dumps(head)[:-1].encode("utf-8"),
                FLOWS_FIELD + b"[",
                self._flows_text(snap, remember),
                b"]" + ALERTS_FIELD,
                alerts.encode("utf-8"),
                b"}\n",
            )
        )

    def _flows_text(self, snap: Snapshot, remember: bool) -> bytes:
        """The flows' texts joined; last call's when the flows have its versions."""
        flows = snap.flows
        tick = versions(flows)
        if tick == self._joined[0]:
            self.encoded = 0
            return self._joined[1]
        parts = recall(self._texts, tick)
        misses = missing(parts)
        for i in misses:
            parts[i] = _dumps(codec.flow_to_dict(flows[i])).encode("utf-8")
        self.encoded = len(misses)
        texts = cast(list[bytes], parts)
        joined = b",".join(texts)
        if remember:
            self._texts, numbered = keep(tick, texts)
            self._joined = (tick if numbered else None, joined)
        return joined
