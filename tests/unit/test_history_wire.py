"""The history request's records: round trips through the codec, bounds on answers, and the
request decoder and the daemon's worker fuzzed with hostile input (hypothesis)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch import codec, history_wire
from netwatch.daemon.history import PER_CLIENT, HistoryWorker
from netwatch.history_wire import (
    MAX_ANSWER,
    MAX_ROWS,
    HistoryError,
    Request,
    answer,
    answer_from_record,
    request,
    request_from_record,
)
from netwatch.model import Severity
from netwatch.model.usage import Away, UsageAnswer, UsageQuery, UsageTotal
from netwatch.store import Store
from tests.builders import make_alert

QUERY = UsageQuery(since=1_700_000_000.0, until=1_700_003_600.0, by="remote", process="curl",
                   country="NL", remote="198.51.100.7", top=5)  # fmt: skip


def _total(i: int) -> UsageTotal:
    return UsageTotal(("198.51.100.7", "NL", f"org {i}"), i, 2 * i, 1, 1_700_000_000, 1_700_000_060)


def _back(line: bytes) -> dict[str, object]:
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    got = json.loads(line)
    assert isinstance(got, dict)
    return got


def test_requests_and_answers_round_trip() -> None:
    usage = Request(3, "usage", query=QUERY)
    assert request_from_record(_back(codec.frame(request(usage)))) == usage
    value = UsageAnswer([_total(1), _total(2)], [60, 3600], True)
    assert answer_from_record(_back(answer(usage, value)), usage) == value
    stepped = UsageAnswer([UsageTotal(("curl", None), 1, 2, 0, 60, 120, at=60)], [60])
    assert answer_from_record(_back(answer(usage, stepped)), usage) == stepped
    bounds = Request(4, "bounds")
    assert request_from_record(_back(codec.frame(request(bounds)))) == bounds
    assert answer_from_record(_back(answer(bounds, (60, 7200))), bounds) == (60, 7200)
    assert answer_from_record(_back(answer(bounds, None)), bounds) is None
    away = Request(5, "away", since=1_700_000_000.0)
    assert request_from_record(_back(codec.frame(request(away)))) == away
    alert = make_alert(alert_id="a1", severity=Severity.HIGH)
    value_away = Away(1_700_000_000.0, (("/usr/bin/curl", 1_700_000_100.0),),
                      (("JP", 1_700_000_200.0),), (alert,))  # fmt: skip
    assert answer_from_record(_back(answer(away, value_away)), away) == value_away


def test_an_error_record_is_one_line_and_raised_as_one() -> None:
    req = Request(9, "bounds")
    line = history_wire.error(9, "bad\nthing " + "x" * 1000)
    record = _back(line)
    assert record["type"] == "history_error" and record["id"] == 9
    assert len(str(record["error"])) <= 300
    assert history_wire.is_answer_to(record, req)
    with pytest.raises(HistoryError, match="the daemon: bad thing"):
        answer_from_record(record, req)


def test_answers_are_cut_to_their_bounds() -> None:
    req = Request(1, "usage", query=UsageQuery(by="remote", step=60))
    many = UsageAnswer([_total(i) for i in range(MAX_ROWS + 10)], [60])
    record = _back(answer(req, many))
    assert record["usage"]["truncated"] is True  # type: ignore[index]
    cut = answer_from_record(record, req)
    assert isinstance(cut, UsageAnswer) and len(cut.totals) == MAX_ROWS and cut.truncated
    wide = UsageAnswer(
        [UsageTotal(("p" * 4000, "x"), 1, 1, 1, 0, 60) for _ in range(MAX_ROWS)], [60]
    )
    line = answer(req, wide)
    assert len(line) <= MAX_ANSWER
    assert _back(line)["usage"]["truncated"] is True  # type: ignore[index]


def test_a_query_without_top_is_capped_and_bad_windows_refused() -> None:
    got = request_from_record(request(Request(1, "usage", query=UsageQuery(by="country"))))
    assert got.query is not None and got.query.top == MAX_ROWS
    backwards = request(Request(1, "usage", query=UsageQuery(since=20.0, until=10.0)))
    with pytest.raises(codec.CodecError, match="since must be before"):
        request_from_record(backwards)
    for query in ({"by": "sql"}, {"by": "process", "step": 1}, {"by": "process", "top": 0},
                  {"by": "process", "until": 1e300}, {"by": "process", "country": 5}):  # fmt: skip
        record = {"schema": 2, "type": "history", "id": 1, "op": "usage", "query": query}
        with pytest.raises(codec.CodecError):
            request_from_record(record)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=5),
    max_leaves=20,
)  # fmt: skip
REQUESTISH = st.fixed_dictionaries(
    {"schema": st.sampled_from([2, 1, "2", None]), "type": st.sampled_from(["history", "x"])},
    optional={
        "id": st.one_of(st.integers(-5, 2**60), st.booleans(), st.text(max_size=3), JSON),
        "op": st.sampled_from(["usage", "bounds", "away", "drop", ""]) | JSON,
        "since": st.floats() | st.integers() | JSON,
        "query": st.fixed_dictionaries(
            {},
            optional={
                "by": st.sampled_from(["process", "remote", "hour", "day", "x"]) | JSON,
                "since": st.floats() | st.integers(-(2**70), 2**70) | JSON,
                "until": st.floats() | st.integers() | JSON,
                "step": st.integers(-10, 10**9) | JSON,
                "top": st.integers(-10, 10**9) | JSON,
                "process": st.text(max_size=50) | JSON,
                "country": st.text(max_size=4) | JSON,
                "remote": st.text(max_size=40) | JSON,
            },
        )
        | JSON,
    },
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(REQUESTISH, JSON))
def test_the_request_decoder_takes_anything(record: object) -> None:
    problem = None
    try:
        req = request_from_record(record)
    except codec.CodecError as exc:
        problem = exc.message
    if problem is not None:
        assert "\n" not in problem  # one line for the error record
        return
    # What it accepts is a request the store can run and that encodes again.
    assert req.op in history_wire.OPS
    assert 0 <= req.id < history_wire.MAX_ID
    assert request_from_record(json.loads(codec.frame(request(req)))) == req


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> HistoryWorker:
    store = Store(tmp_path_factory.mktemp("wire") / "n.db")
    return HistoryWorker(store.reader(), time_limit=1.0)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=600) | st.lists(REQUESTISH, max_size=4).map(
    lambda rs: b"".join(json.dumps(r).encode() + b"\n" for r in rs)))  # fmt: skip
def test_the_worker_answers_any_bytes_with_answers_or_error_records(
    worker: HistoryWorker, data: bytes
) -> None:
    """What the server does with a client's bytes: frame them, hand each record over; every
    immediate reply is one error record line, and every queued one is answered."""
    reader = codec.FrameReader(history_wire.MAX_REQUEST)
    queued = 0
    for record in reader.feed(data + b"\n"):
        line = worker.submit(1, record)
        if line is None:
            queued += 1
            continue
        assert _back(line)["type"] == "history_error"
    assert queued <= PER_CLIENT
    got: list[bytes] = []
    for _ in range(200):
        got += [line for _, line in worker.take()]
        if len(got) >= queued:
            break
        time.sleep(0.01)
    assert len(got) == queued
    for line in got:
        assert _back(line)["type"] in ("history_answer", "history_error")
    worker.forget(1)


def test_the_worker_stops(tmp_path: Path) -> None:
    store = Store(tmp_path / "n.db")
    w = HistoryWorker(store.reader())
    assert w.submit(1, request(Request(1, "bounds"))) is None
    w.close()
    store.close()
