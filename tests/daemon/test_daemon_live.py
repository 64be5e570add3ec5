"""Acceptance: the daemon stores every alert it announces, survives SIGKILL, stops on SIGTERM.

The daemon runs inside the lab's host namespace (its socket sampler sees that namespace);
copies of the interpreter connect to a holding server in a peer namespace, so
`process.first_connection` fires once per copy from the real rule pack. The test reads
snapshots from the daemon's Unix socket through `DaemonFeed`, like the dashboard does.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from netwatch.store import integrity_check
from tests.conftest import requires_root, requires_tools
from tests.daemon.harness import (
    PEER_IP,
    REPO,
    Collector,
    daemon_argv,
    export,
    exported_ids,
    lab_daemon_argv,
    make_programs,
    run_programs,
    start_peer_server,
    stop,
)
from tests.mmdb import write_mmdb
from tests.netns import Lab
from tests.unit.test_export import RFC5424, sd_params

pytestmark = [
    pytest.mark.daemon,
    pytest.mark.live,
    requires_root,
    requires_tools("ip", "ss"),
    pytest.mark.timeout(120),
]


def _first_connections(c: Collector) -> dict[str, object]:
    return {k: a for k, a in c.announced().items() if a.rule_id == "process.first_connection"}


@pytest.fixture
def geo(tmp_path: Path) -> Path:
    return write_mmdb(tmp_path / "geo.mmdb", {"198.51.100.0/24": ("NL", 64500, "Example Net")})


def test_every_announced_alert_is_exported_after_sigterm(tmp_path: Path, geo: Path) -> None:
    db, sock = tmp_path / "state" / "n.db", tmp_path / "run" / "n.sock"
    sock.parent.mkdir()  # a socket named on the command line goes into an existing folder
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(5)
    progs = make_programs(tmp_path / "bin", 3)
    with Lab("dmn") as lab:
        peer = lab.add_peer(PEER_IP)
        start_peer_server(lab, peer)
        # A bare environment, as systemd gives the unit (which sets CONFIGURATION_DIRECTORY;
        # here the tests' own empty folder, not the machine's /etc/netwatch).
        env = {
            "NOTIFY_SOCKET": str(tmp_path / "notify"),
            "PATH": "/usr/bin:/bin",
            "CONFIGURATION_DIRECTORY": os.environ["CONFIGURATION_DIRECTORY"],
        }
        daemon = lab.spawn(
            lab.host,
            lab_daemon_argv(
                db,
                sock,
                "--interval",
                "0.5",
                "--ticks",
                "200",
                "--geoip-db",
                str(geo),
                "--export-file",
                str(tmp_path / "live.jsonl"),
            ),  # fmt: skip
            cwd=REPO,
            env=env,
            stderr=subprocess.PIPE,
        )
        assert notify.recv(4096).startswith(b"READY=1")
        collector = Collector(sock)
        try:
            assert collector.wait_for(lambda c: len(c.snapshots) >= 2, 20)
            run_programs(lab, progs, hold=3.0)
            assert collector.wait_for(lambda c: len(_first_connections(c)) >= 3, 30), (
                collector.announced()
            )
            took = stop(daemon, signal.SIGTERM)
        finally:
            collector.close()
        assert daemon.returncode == 0
        assert took < 5.0
        stderr = daemon.stderr.read().decode() if daemon.stderr else ""
        assert "Traceback" not in stderr
    announced = collector.announced()
    names = {a.process.name for a in _first_connections(collector).values() if a.process}
    assert {p.name for p in progs} <= names
    assert all(s.status.mode == "daemon" for s in collector.snapshots)
    assert set(announced) <= exported_ids(db)
    assert integrity_check(db) == "ok"
    assert not sock.exists()
    live = [json.loads(x) for x in (tmp_path / "live.jsonl").read_text().splitlines()]
    assert set(announced) <= {r["id"] for r in live}  # the live file sink got them too

    # The same alerts through every other format, each read back by a parser.
    rows = list(csv.DictReader(io.StringIO(export(db, "csv").stdout, newline="")))
    assert set(announced) <= {r["id"] for r in rows}
    mine = [r for r in rows if r["process"] in names]
    assert all(r["remote_ip"] == PEER_IP and r["country"] == "NL" for r in mine)
    ecs = [json.loads(x) for x in export(db, "ecs").stdout.splitlines()]
    assert set(announced) <= {d["event"]["id"] for d in ecs}
    mine_ecs = [d for d in ecs if d.get("process", {}).get("name") in names]
    assert mine_ecs
    for d in mine_ecs:
        assert d["destination"]["geo"]["country_iso_code"] == "NL"
        assert d["destination"]["as"]["number"] == 64500
        assert re.fullmatch(r"1:[A-Za-z0-9+/]{27}=", d["network"]["community_id"])
    for line in export(db, "syslog").stdout.splitlines():
        m = RFC5424.match(line)
        assert m, line
        assert sd_params(m["sd"])["rule"]


def test_sigkill_mid_burst_loses_no_announced_alert(tmp_path: Path) -> None:
    db, sock = tmp_path / "n.db", tmp_path / "n.sock"
    progs = make_programs(tmp_path / "bin", 24, prefix="nwkill")
    with Lab("dmn") as lab:
        peer = lab.add_peer(PEER_IP)
        start_peer_server(lab, peer)
        daemon = lab.spawn(lab.host, lab_daemon_argv(db, sock, "--interval", "0.2"), cwd=REPO)
        collector = Collector(sock)
        burst = threading.Thread(target=run_programs, args=(lab, progs, 4.0, 0.25))
        try:
            assert collector.wait_for(lambda c: len(c.snapshots) >= 1, 20)
            burst.start()
            # Kill once part of the burst has been announced, while the rest still arrives.
            assert collector.wait_for(lambda c: len(_first_connections(c)) >= 6, 30)
            daemon.send_signal(signal.SIGKILL)
            daemon.wait(5)
            announced = collector.announced()
        finally:
            collector.close()
            if burst.is_alive():
                burst.join(30)
    assert len(_first_connections(collector)) < 24, "the kill came after the whole burst"
    # Restart on the same store: it opens, recovers the WAL, and runs.
    restart = subprocess.run(
        daemon_argv(db, sock, "--ticks", "1"), cwd=REPO, capture_output=True, text=True,
        timeout=60, check=False,
    )  # fmt: skip
    assert restart.returncode == 0, restart.stderr
    assert integrity_check(db) == "ok"
    assert set(announced) <= exported_ids(db)
