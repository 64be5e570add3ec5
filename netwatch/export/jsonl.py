"""JSONL export: one codec record per line, as `analyze --format jsonl` writes it.

Alerts are the codec alert record. Flow records (`export.flowlog`) are the codec flow record
(running totals, `type: flow`, so anything that reads `analyze --format jsonl` flows reads
them) with a `report` object: why it was written (`end`, `active_timeout`, `shutdown`),
whether it is the conversation's last, its period (`start`, `end`, epoch seconds) and the
bytes and packets of that period (`bytes_sent` is local to remote, as in the flow record).
"""

from __future__ import annotations

import json

from netwatch import codec
from netwatch.export.flowlog import FlowReport
from netwatch.model import Alert


def format_jsonl(alert: Alert) -> str:
    """The alert as one compact JSON line (no newline)."""
    return codec.dumps(alert)


def flow_report_to_dict(r: FlowReport) -> dict[str, object]:
    """The codec flow record of the report's flow, with its `report` object."""
    record = codec.flow_to_dict(r.flow)
    record["report"] = {
        "reason": r.reason.value,
        "final": r.final,
        "start": r.start,
        "end": r.end,
        "bytes_sent": r.bytes_sent,
        "bytes_received": r.bytes_received,
        "packets_sent": r.packets_sent,
        "packets_received": r.packets_received,
    }
    return record


def format_flow_jsonl(r: FlowReport) -> str:
    """One flow record as a compact JSON line (no newline), as `codec.dumps` writes one."""
    return json.dumps(flow_report_to_dict(r), separators=(",", ":"), ensure_ascii=False)
