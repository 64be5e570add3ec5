"""The history request on the daemon's socket: what a client asks and what the daemon answers.

A client that is not allowed to read the daemon's store file (outside the `netwatch` group)
may still attach to its socket; it asks the past there. Records are framed like the stream's
(`codec.frame`, one JSON object a line) and carry the stream's schema (2):

* `history` (client to daemon): `id` (a whole number the client picks, echoed back), `op`
  (`usage`: `query`, a `codec.usage_query_to_dict` object; `bounds`; `away`: `since`);
* `history_answer`: `id`, `op`, and `usage` (`codec.usage_answer_to_dict`, with `truncated`
  when the rows were cut to fit `MAX_ROWS` or `MAX_ANSWER`), `bounds` (`[start, end]` or
  null) or `away` (`codec.away_to_dict`);
* `history_error`: `id` (null when the request had none that could be read) and `error`,
  one line.

No existing record changed and the new ones go only to a client that asked, so the schema
stays 2: an older dashboard never sees them, and an older daemon discards what clients send
(a client that gets no answer says so: `NoAnswer`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from netwatch import codec
from netwatch.errors import NetwatchError
from netwatch.model.usage import BY, Away, UsageAnswer, UsageQuery
from netwatch.stream import STREAM_SCHEMA

OPS = ("usage", "bounds", "away")
MAX_REQUEST = 16 * 1024
"""Longest request line the daemon reads; a longer one is passed over as bad."""
MAX_ROWS = 50_000
"""Most totals one answer carries (a query's `top` is capped to it too)."""
MAX_GROUPS = 100_000
"""Most groups the daemon's query may make before it gives up with an error line (the
answer carries at most `MAX_ROWS` of them; ranking needs them all)."""
MAX_ANSWER = 8 * 1024 * 1024
"""Most bytes one answer takes on the wire; rows are cut (`truncated`) until it fits."""
MAX_ALERTS = 200
"""Most alerts "while you were away" carries (the newest)."""
MAX_ID = 2**53
"""Request ids are whole numbers below this (every JSON reader keeps them exact)."""

HistoryValue = UsageAnswer | tuple[int, int] | Away | None


class HistoryError(NetwatchError):
    """The daemon answered with an error line, or the answer could not be read."""


@dataclass(frozen=True, slots=True)
class Request:
    """One decoded history request."""

    id: int
    op: str
    query: UsageQuery | None = None
    since: float | None = None


def request(req: Request) -> codec.JSONDict:
    """The `history` record of `req`."""
    out: codec.JSONDict = {"schema": STREAM_SCHEMA, "type": "history", "id": req.id, "op": req.op}
    if req.query is not None:
        out["query"] = codec.usage_query_to_dict(req.query)
    if req.since is not None:
        out["since"] = req.since
    return out


def is_request(record: Any) -> bool:
    """Whether a record claims to be a history request (it may still be malformed)."""
    return isinstance(record, dict) and record.get("type") == "history"


def request_id(record: Any) -> int | None:
    """The request's id when it has a usable one (for the error record), else None."""
    got = record.get("id") if isinstance(record, dict) else None
    ok = isinstance(got, int) and not isinstance(got, bool) and 0 <= got < MAX_ID
    return got if ok else None


def request_from_record(record: Any) -> Request:
    """Decode and check a request; anything malformed is a `CodecError` (one line)."""
    if not isinstance(record, dict):
        raise codec.CodecError("a request must be a JSON object")
    if record.get("schema") != STREAM_SCHEMA or record.get("type") != "history":
        raise codec.CodecError(f"not a history request (schema {STREAM_SCHEMA}, type history)")
    rid = request_id(record)
    if rid is None:
        raise codec.CodecError(f"field 'id' must be a whole number from 0 to {MAX_ID}")
    op = record.get("op")
    if op not in OPS:
        raise codec.CodecError(f"field 'op' must be one of {', '.join(OPS)}")
    if op == "usage":
        query = codec.usage_query_from_dict(codec.get_object(record, "query") or {})
        if query.since is not None and query.until is not None and query.since >= query.until:
            raise codec.CodecError("the query's since must be before its until")
        top = MAX_ROWS if query.top is None else min(query.top, MAX_ROWS)
        if query.by in BY and not query.step:
            query = replace(query, top=top)
        return Request(rid, op, query=query)
    if op == "away":
        return Request(rid, op, since=codec.get_time(record, "since"))
    return Request(rid, op)


def error(rid: int | None, text: str) -> bytes:
    """A framed `history_error` record: one line, at most 300 characters."""
    line = " ".join(text.split())[:300]
    return codec.frame({"schema": STREAM_SCHEMA, "type": "history_error", "id": rid, "error": line})


def answer(req: Request, value: HistoryValue) -> bytes:
    """The framed answer to `req`, within `MAX_ROWS` totals, `MAX_ALERTS` alerts and
    `MAX_ANSWER` bytes (rows are halved until it fits; `truncated` says so)."""
    out: codec.JSONDict = {
        "schema": STREAM_SCHEMA,
        "type": "history_answer",
        "id": req.id,
        "op": req.op,
    }
    if isinstance(value, UsageAnswer):
        totals = value.totals
        cut = len(totals) > MAX_ROWS
        totals = totals[:MAX_ROWS]
        while True:
            out["usage"] = codec.usage_answer_to_dict(replace(value, totals=totals, truncated=cut))
            line = codec.frame(out)
            if len(line) <= MAX_ANSWER or not totals:
                return line
            totals, cut = totals[: len(totals) // 2], True
    if isinstance(value, Away):
        alerts = value.alerts[-MAX_ALERTS:]
        out["away"] = codec.away_to_dict(replace(value, alerts=alerts))
        line = codec.frame(out)
        if len(line) > MAX_ANSWER:  # names are bounded by the store; alerts are not
            out["away"] = codec.away_to_dict(replace(value, alerts=()))
            line = codec.frame(out)
        return line
    out["bounds"] = None if value is None else [int(value[0]), int(value[1])]
    return codec.frame(out)


def answer_from_record(record: codec.JSONDict, req: Request) -> HistoryValue:
    """What the daemon answered to `req`; its error line as `HistoryError`, and a malformed
    answer as `HistoryError` too."""
    if record.get("type") == "history_error":
        raise HistoryError(f"the daemon: {str(record.get('error'))[:300]}")
    try:
        if record.get("op") != req.op:
            raise codec.CodecError(f"an answer to {record.get('op')!r}, not to {req.op!r}")
        if req.op == "usage":
            return codec.usage_answer_from_dict(codec.get_object(record, "usage") or {})
        if req.op == "away":
            got = codec.get_object(record, "away")
            return None if got is None else codec.away_from_dict(got)
        bounds = record.get("bounds")
        if bounds is None:
            return None
        if not (
            isinstance(bounds, list)
            and len(bounds) == 2
            and all(isinstance(b, int) and not isinstance(b, bool) for b in bounds)
        ):
            raise codec.CodecError("field 'bounds' must be two whole numbers or null")
        return int(bounds[0]), int(bounds[1])
    except codec.CodecError as exc:
        raise HistoryError(f"a damaged answer from the daemon: {exc.message}") from None


def is_answer_to(record: Any, req: Request) -> bool:
    """Whether a record is the answer (or the error) for `req` (other records are passed
    over: the stream's `state` a client may have been sent before it asked)."""
    return (
        isinstance(record, dict)
        and record.get("type") in ("history_answer", "history_error")
        and record.get("id") == req.id
    )
