"""Damaged list histories: every loader answer is a checked history or one located error.

Property tests feed `load_history` damaged bytes (mutations of a real history, and histories
of arbitrary JSON values); whatever loads must be safe to match on every daemon tick.
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netwatch.daemon.metrics import Metrics
from netwatch.enrich.enricher import Enricher
from netwatch.enrich.lists import (
    EARLIEST,
    LATEST,
    History,
    HistoryMatcher,
    history_path,
    load_history,
    load_matchers,
    parse_tor,
    relay_entries,
    save_history,
)
from netwatch.enrich.vpngate_list import Relay
from netwatch.errors import DataFileError
from netwatch.model import SourceStatus, parse_ip
from tests.builders import T0, make_snapshot
from tests.daemon.test_service import _service
from tests.unit.test_lists import LIST, server  # noqa: F401  # the loopback list server fixture

RELAYS = [
    Relay("vpn1", parse_ip("203.0.113.7"), "JP", 1, 3, ports=(("tcp", 1433),)),
    Relay("vpn2", parse_ip("2001:db8::2"), None, 1, 3, ports=(("udp", 1195), ("tcp", 443))),
]


def _valid_bytes(tmp: Path) -> bytes:
    history = History("vpngate", {}).merge(relay_entries(RELAYS), T0, "u")
    return save_history(history, tmp).read_bytes()


def _load_or_error(tmp: Path, data: bytes) -> History | None:
    """Load `data` as the VPN Gate history; a DataFileError must name the file, in one line."""
    path = history_path("vpngate", tmp)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    try:
        history = load_history("vpngate", tmp)
    except DataFileError as exc:
        text = str(exc)
        assert text.startswith(f"{path}"), text
        assert "\n" not in text
        return None
    for e in history.entries.values():
        assert EARLIEST <= e.first_seen <= e.last_seen <= LATEST
        assert all(p in ("tcp", "udp") and 0 < n < 65536 for p, n in e.ports)
        assert e.country is None or len(e.country) == 2
        HistoryMatcher(history).match(e.ip, 443)  # formats the dates: must not raise
    assert history.updated is None or math.isfinite(history.updated)
    return history


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 2000),
    st.binary(min_size=1, max_size=12),
    st.sampled_from(["replace", "insert", "cut"]),
)
def test_damaged_bytes_load_checked_or_fail_with_one_located_line(
    at: int, junk: bytes, how: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = _valid_bytes(Path(tmp))
        at %= len(data)
        if how == "replace":
            data = data[:at] + junk + data[at + len(junk) :]
        elif how == "insert":
            data = data[:at] + junk + data[at:]
        else:
            data = data[:at]
        _load_or_error(Path(tmp), data)


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["127.0.0.1", "2001:db8::1", "tcp/443", "udp/0", "tcp/65536", "JP"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)
KEYS = ["ip", "first_seen", "last_seen", "ports", "names", "country", "exit"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.dictionaries(st.sampled_from(KEYS), JSON), st.sampled_from(KEYS), JSON)
def test_entries_of_any_json_values_load_checked_or_fail_located(
    entry: dict[str, object], key: str, value: object
) -> None:
    good = {"ip": "127.0.0.1", "first_seen": T0, "last_seen": T0, "ports": ["tcp/1"]}
    doc = {"schema": 1, "updated": T0, "entries": [{**good, **entry}, {**good, key: value}]}
    with tempfile.TemporaryDirectory() as tmp:
        _load_or_error(Path(tmp), json.dumps(doc).encode())


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (float("nan"), "nan"),
        (-1.0, "-1.0"),
        (1e300, "1e+300"),
        (float("inf"), "inf"),
        (True, "True"),
        ("2023-11-14", "'2023-11-14'"),
    ],
)
def test_implausible_times_name_the_key(tmp_path: Path, value: object, shown: str) -> None:
    entry = {"ip": "127.0.0.1", "first_seen": value, "last_seen": T0}
    data = json.dumps({"schema": 1, "entries": [entry]}).encode()
    with pytest.raises(DataFileError) as err:
        _load_or_error_raising(tmp_path, data)
    assert str(err.value) == (
        f"{history_path('vpngate', tmp_path)}: entries[0].first_seen: {shown} is not a time"
        + (" between 2000 and 2100" if isinstance(value, float) else "")
        + "; run 'netwatch lists update' to replace it"
    )


def _load_or_error_raising(tmp: Path, data: bytes) -> History:
    path = history_path("vpngate", tmp)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return load_history("vpngate", tmp)


def test_bad_json_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(DataFileError) as err:
        _load_or_error_raising(tmp_path, b'{"schema": 1,\n "entries": [\n  {"ip": ]}')
    assert str(err.value).startswith(f"{history_path('vpngate', tmp_path)}:3: not JSON")


def test_a_damaged_list_is_skipped_and_reported_by_the_enricher(tmp_path: Path) -> None:
    save_history(History("tor", {}).merge(relay_entries(RELAYS), T0, "u"), tmp_path)
    _ = history_path("vpngate", tmp_path).write_bytes(b'{"schema": 1, "entries": [\xff]}')
    matchers, problems = load_matchers(tmp_path)
    assert [m.history.name for m in matchers] == ["tor"]
    enricher = Enricher([], lists=matchers, problems=problems)
    (line,) = enricher.skipped()
    assert line == (
        f"{history_path('vpngate', tmp_path)}: not UTF-8 text (byte 26); "
        "run 'netwatch lists update' to replace it"
    )


def test_metrics_carry_one_series_per_skipped_file() -> None:
    m = Metrics()
    skipped = ("/d/lists/vpngate.json: entries[0].ip: 'x' is not an IP address",)
    m.observe(replace(make_snapshot(1), status=SourceStatus(skipped=skipped)))
    value = m.registry.get_sample_value
    assert value("netwatch_data_file_skipped", {"file": "/d/lists/vpngate.json"}) == 1
    m.observe(make_snapshot(2))  # replaced by a good file (after `lists update` and a restart)
    assert value("netwatch_data_file_skipped", {"file": "/d/lists/vpngate.json"}) is None


def test_lists_update_sets_a_damaged_history_aside_and_starts_afresh(
    netwatch_cmd: list[str],
    server: tuple[str, dict[str, tuple[int, bytes]]],  # noqa: F811  # the imported fixture
) -> None:
    base, routes = server
    routes["/api/iphone/"] = (200, LIST.encode())
    path = history_path("vpngate")
    path.parent.mkdir(parents=True)
    path.write_bytes(b'{"schema": 1, "entries": [{"ip": "127.0.0.1", "first_seen": NaN}]}')
    res = subprocess.run(
        [*netwatch_cmd, "lists", "update", "--only", "vpngate", "--vpngate-url",
         f"{base}/api/iphone/"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"the damaged history was set aside as {path}.damaged" in res.stdout
    assert b"NaN" in path.with_name("vpngate.json.damaged").read_bytes()
    assert len(load_history("vpngate").entries) == 3


def test_daemon_keeps_ticking_and_logs_each_skipped_file_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    status = SourceStatus(skipped=("/d/x.json: bad",))
    snaps = [replace(make_snapshot(i), status=status) for i in range(1, 4)]
    service, _ = _service(tmp_path, snaps)
    with caplog.at_level(logging.WARNING, "netwatch.daemon"):
        for _ in snaps:
            assert service.tick_once().status.skipped == status.skipped
    service.shutdown()
    logged = [r.getMessage() for r in caplog.records if r.name == "netwatch.daemon"]
    assert logged == ["skipping a damaged data file, running without it: /d/x.json: bad"]


def test_tor_ports_out_of_range_are_dropped_so_the_history_stays_loadable(tmp_path: Path) -> None:
    consensus = "r relay1 AAAA BBBB 2026-11-01 10:00:00 192.0.2.9 99999 0\na [2001:db8::9]:70000\n"
    entries = parse_tor(consensus)
    assert [e.ports for e in entries] == [(), ()]
    save_history(History("tor", {}).merge(entries, T0, "u"), tmp_path)
    assert len(load_history("tor", tmp_path).entries) == 2


def test_the_status_line_names_skipped_files_and_the_codec_carries_them() -> None:
    from netwatch import codec
    from netwatch.ui.view import ViewState
    from netwatch.ui.widgets.status_bar import status_text

    skipped = ("/d/lists/tor.json: not UTF-8 text (byte 3)",)
    snap = replace(make_snapshot(1), status=SourceStatus(skipped=skipped))
    again = codec.loads(codec.dumps(snap))  # the daemon socket and recordings
    assert isinstance(again, type(snap)) and again.status.skipped == skipped
    text = status_text(again, ViewState(), 0, None).plain
    assert "skipped data files: /d/lists/tor.json: not UTF-8 text (byte 3)" in text
    assert "all sources available" not in text
    assert "skipped" not in status_text(make_snapshot(2), ViewState(), 0, None).plain
