"""The daemon on this host's own namespace: permissions, SIGHUP reload, sd_notify, the unit.

No traffic is generated here; the daemon samples whatever sockets exist and the tests look at
what it does around the loop.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import requires_root, requires_tools
from tests.daemon.harness import REPO, Collector, daemon_argv, stop

pytestmark = [pytest.mark.daemon, pytest.mark.timeout(90)]

UNIT = REPO / "packaging" / "systemd" / "netwatch.service"


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A world-traversable folder (0755), so only the files' own modes protect them."""
    path = Path(tempfile.mkdtemp(prefix="nwdmn-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _wait_for(cond: object, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def _as_nobody(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
         "/usr/bin/python3", "-c", code],
        capture_output=True, text=True, timeout=30, check=False, cwd="/",
    )  # fmt: skip


@requires_root
@requires_tools("setpriv", "/usr/bin/python3")
def test_other_users_cannot_connect_or_read_the_db(open_dir: Path) -> None:
    db, sock = open_dir / "state" / "n.db", open_dir / "run" / "n.sock"
    (open_dir / "state").mkdir(mode=0o755)
    (open_dir / "run").mkdir(mode=0o755)
    daemon = subprocess.Popen(
        daemon_argv(db, sock, "--interval", "0.2", "--ticks", "300"), cwd=REPO
    )
    try:
        assert _wait_for(sock.exists, 20)
        collector = Collector(sock)  # root can connect
        assert collector.wait_for(lambda c: len(c.snapshots) >= 1, 20)
        collector.close()
        assert stat.S_IMODE(sock.stat().st_mode) == 0o660
        for f in (db, Path(f"{db}-wal")):
            assert stat.S_IMODE(f.stat().st_mode) & 0o007 == 0, f
        connect = _as_nobody(
            "import socket,sys\ns=socket.socket(socket.AF_UNIX)\n"
            f"try:\n s.connect({str(sock)!r})\nexcept PermissionError:\n sys.exit(13)\n"
        )
        assert connect.returncode == 13, connect.stderr
        read = _as_nobody(
            f"import sys\ntry:\n open({str(db)!r},'rb').read(1)\nexcept PermissionError:\n"
            " sys.exit(13)\n"
        )
        assert read.returncode == 13, read.stderr
    finally:
        stop(daemon)
    assert daemon.returncode == 0


def _drain(sock: socket.socket, into: list[str], proc: subprocess.Popen[bytes]) -> None:
    """Read sd_notify datagrams (as systemd would) until the daemon has exited."""
    while True:
        try:
            into.append(sock.recv(4096).decode())
        except TimeoutError:
            if proc.poll() is not None:
                return


def test_sighup_reload_keeps_old_config_on_error_then_applies_good_one(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[policy]\nhome_country = "NL"\n')
    log = tmp_path / "daemon.log"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify"), "WATCHDOG_USEC": "2000000"}
    sock = tmp_path / "n.sock"
    with log.open("w") as err:
        daemon = subprocess.Popen(
            daemon_argv(tmp_path / "n.db", sock, "--interval", "0.2", "--config", str(cfg)),
            cwd=REPO, stderr=err, env=env,
        )  # fmt: skip
    messages: list[str] = []
    notify.settimeout(1)
    reader = threading.Thread(target=_drain, args=(notify, messages, daemon), daemon=True)
    reader.start()
    collector = Collector(sock)
    try:
        assert collector.wait_for(lambda c: len(c.snapshots) >= 2, 20)
        assert _wait_for(lambda: "WATCHDOG=1" in messages, 10)
        assert messages[0].startswith("READY=1\nSTATUS=")
        cfg.write_text("[policy]\nhome_country = 5\n")
        daemon.send_signal(signal.SIGHUP)
        assert _wait_for(lambda: "reload failed" in log.read_text(), 20), log.read_text()
        failed = [x for x in log.read_text().splitlines() if "reload failed" in x]
        assert len(failed) == 1
        assert "home_country" in failed[0]
        seen = len(collector.snapshots)
        assert collector.wait_for(lambda c: len(c.snapshots) >= seen + 3, 20), "loop stalled"
        cfg.write_text('[policy]\nhome_country = "DE"\n')
        daemon.send_signal(signal.SIGHUP)
        assert _wait_for(lambda: "reloaded config" in log.read_text(), 20), log.read_text()
        took = stop(daemon, signal.SIGTERM)
    finally:
        collector.close()
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0
    assert took < 5
    text = log.read_text()
    assert "Traceback" not in text
    reader.join(5)
    assert any(m.startswith("STOPPING=1") for m in messages)
    assert any(m.startswith("RELOADING=1") for m in messages)


def test_sigint_also_stops_cleanly(tmp_path: Path) -> None:
    sock = tmp_path / "n.sock"
    daemon = subprocess.Popen(daemon_argv(tmp_path / "n.db", sock, "--interval", "0.2"), cwd=REPO)
    assert _wait_for(sock.exists, 20)
    assert stop(daemon, signal.SIGINT) < 5
    assert daemon.returncode == 0
    assert not sock.exists()


def test_second_daemon_on_same_socket_is_one_line_error(tmp_path: Path) -> None:
    sock = tmp_path / "n.sock"
    first = subprocess.Popen(daemon_argv(tmp_path / "a.db", sock, "--interval", "0.2"), cwd=REPO)
    try:
        assert _wait_for(sock.exists, 20)
        second = subprocess.run(
            daemon_argv(tmp_path / "b.db", sock, "--ticks", "1"),
            cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert lines == [f"netwatch: another netwatch daemon is already serving {sock}"]
    finally:
        stop(first)


def test_socket_in_a_missing_folder_is_one_line_exit_1(tmp_path: Path) -> None:
    sock = tmp_path / "nonexistent" / "dir" / "s.sock"
    res = subprocess.run(
        daemon_argv(tmp_path / "n.db", sock, "--ticks", "1", "--no-capture"),
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"netwatch: cannot create socket {sock}: no directory {sock.parent}"
    ]
    assert not (tmp_path / "nonexistent").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["--interval", "0"],
        ["--interval", "soon"],
        ["--ticks", "-3"],
        ["--metrics-port", "70000"],
        ["--syslog", "http://x"],
        ["--export-format", "xml"],
        ["--flow-export-format", "csv"],
        ["--flow-export-every", "-1"],
    ],
)
def test_bad_daemon_flags_are_one_line_exit_2(argv: list[str], tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "netwatch", "daemon", "--db", str(tmp_path / "x.db"), *argv],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.db").exists()


def test_corrupt_db_is_one_line_exit_1(tmp_path: Path) -> None:
    db = tmp_path / "bad.db"
    db.write_bytes(b"garbage" * 1000)
    res = subprocess.run(
        daemon_argv(db, tmp_path / "s.sock", "--ticks", "1"),
        cwd=REPO, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 1
    assert res.stderr.strip().splitlines() == [
        f"netwatch: {db}: not a usable netwatch database (file is not a database)"
    ]


@requires_tools("systemd-analyze")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    text = UNIT.read_text()
    assert "Type=notify" in text
    # verify checks that ExecStart exists: point it at this checkout's interpreter.
    unit = tmp_path / "netwatch.service"
    unit.write_text(
        text.replace("/opt/netwatch/bin/netwatch daemon", f"{sys.executable} -m netwatch daemon")
    )
    res = subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "netwatch.service" not in res.stderr, res.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_endpoint_on_localhost(tmp_path: Path) -> None:
    import urllib.request

    port = _free_port()
    daemon = subprocess.Popen(
        daemon_argv(tmp_path / "n.db", tmp_path / "n.sock", "--interval", "0.2",
                    "--metrics-port", str(port), "--no-capture"),
        cwd=REPO,
    )  # fmt: skip
    body = b""
    try:

        def scraped() -> bool:
            nonlocal body
            try:
                url = f"http://127.0.0.1:{port}/metrics"
                body = urllib.request.urlopen(url, timeout=2).read()  # noqa: S310  # loopback
            except OSError:
                return False
            return b"netwatch_sample_duration_seconds_count" in body and b"_count 0.0" not in body

        assert _wait_for(scraped, 20)
    finally:
        stop(daemon)
    assert daemon.returncode == 0
    assert b"netwatch_flows " in body
    assert b"netwatch_socket_clients" in body
    assert b"# TYPE netwatch_capture_drops_total counter" in body
    promtool = shutil.which("promtool")
    if promtool is not None:  # Debian's prometheus package; tests/daemon/test_metrics.py too
        lint = subprocess.run(  # noqa: S603  # promtool from PATH, the daemon's text on stdin
            [promtool, "check", "metrics"], input=body, capture_output=True, timeout=60,
            check=False,
        )  # fmt: skip
        assert lint.returncode == 0 and not lint.stdout.strip(), lint


def test_daemon_settings_come_from_the_config_and_flags_win(tmp_path: Path) -> None:
    # What a systemd unit (no flags) runs with: the [daemon] section. A flag still wins.
    import urllib.request

    from_config, from_flag = _free_port(), _free_port()
    config = tmp_path / "config.toml"
    config.write_text(f"[daemon]\nmetrics_port = {from_config}\ninterval = 0.2\ncapture = false\n")

    def serves(port: int) -> bytes:
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            return bytes(urllib.request.urlopen(url, timeout=2).read())  # noqa: S310  # loopback
        except OSError:
            return b""

    sock = tmp_path / "n.sock"
    daemon = subprocess.Popen(
        daemon_argv(tmp_path / "n.db", sock, "--config", str(config)), cwd=REPO
    )
    try:
        assert _wait_for(
            lambda: b"netwatch_sample_duration_seconds_count" in serves(from_config), 20
        )
        collector = Collector(sock)
        try:
            assert collector.wait_for(lambda c: len(c.snapshots) >= 6, 20)
            snaps = collector.snapshots[-5:]
        finally:
            collector.close()
    finally:
        stop(daemon)
    assert daemon.returncode == 0
    gaps = [b.taken_at - a.taken_at for a, b in zip(snaps, snaps[1:], strict=False)]
    assert statistics.median(gaps) < 0.5, f"interval 0.2 from the config, not 1 s: {gaps}"
    assert snaps[-1].status.capture is False  # capture = false

    daemon = subprocess.Popen(
        daemon_argv(tmp_path / "n.db", tmp_path / "n.sock", "--config", str(config),
                    "--metrics-port", str(from_flag)),
        cwd=REPO,
    )  # fmt: skip
    try:
        assert _wait_for(lambda: b"netwatch_flows" in serves(from_flag), 20)
        assert serves(from_config) == b""
    finally:
        stop(daemon)
    assert daemon.returncode == 0


def test_a_bad_daemon_setting_is_one_located_line_exit_1(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text('[daemon]\ninterval = 0\nsyslog = "udp://loghost"\n')
    res = subprocess.run(
        daemon_argv(tmp_path / "n.db", tmp_path / "n.sock", "--config", str(config)),
        cwd=REPO, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert res.returncode == 1 and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 2, res.stderr
    assert "daemon.interval" in lines[0] and "daemon.syslog" in lines[1]
    assert not (tmp_path / "n.db").exists(), "nothing is opened before the config is good"


def _ports(doc: dict[str, Any]) -> set[int]:
    return {doc.get(side, {}).get("port") for side in ("source", "destination")} - {None}


def test_flow_log_records_a_closed_connection_and_open_ones_at_stop(tmp_path: Path) -> None:
    """A loopback connection this test holds: one ECS record when it closes, valid field by
    field against the ECS reference; the conversations still open get one at the stop."""
    import json

    from tests.unit.test_ecs_fields import problems

    flows = tmp_path / "out" / "flows.ndjson"
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        peer, _ = server.accept()
        client.sendall(b"x" * 3000)
        peer.recv(4096)
        daemon = subprocess.Popen(
            daemon_argv(tmp_path / "n.db", tmp_path / "n.sock", "--interval", "0.2",
                        "--no-capture", "--flow-export-file", str(flows),
                        "--flow-export-format", "ecs", "--flow-export-every", "0"),
            cwd=REPO,
        )  # fmt: skip
        collector = Collector(tmp_path / "n.sock")
        try:

            def seen(c: Collector) -> bool:
                snaps = c.snapshots[-1:]
                return any(f.flow.key.local.port == port for s in snaps for f in s.flows)

            assert collector.wait_for(seen, 30)  # the daemon saw the connection open
            collector.close()
            # a reset, not a FIN: no TIME_WAIT socket lingers on for a minute
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            peer.close()

            def ended() -> list[dict[str, Any]]:
                lines = flows.read_text("utf-8").splitlines() if flows.exists() else []
                return [d for d in map(json.loads, lines) if _ports(d) & {port}]

            assert _wait_for(lambda: len(ended()) >= 2, 20)  # the client's and the server's
        finally:
            collector.close()
            stop(daemon)
    assert daemon.returncode == 0
    docs = [json.loads(line) for line in flows.read_text("utf-8").splitlines()]
    assert all(problems(d) == [] for d in docs), [problems(d) for d in docs if problems(d)]
    ours = [d for d in docs if _ports(d) & {port}]
    assert {d["event"]["reason"] for d in ours} == {"end"}
    outbound = next(d for d in ours if d["network"]["direction"] == "egress")
    inbound = next(d for d in ours if d["network"]["direction"] == "ingress")
    assert outbound["destination"]["port"] == port and inbound["destination"]["port"] == port
    assert outbound["process"]["pid"] == os.getpid()
    assert outbound["event"]["type"] == ["connection", "end"]
    assert outbound["source"]["bytes"] >= 3000  # what the client sent, the period's count
    assert any(d["event"]["reason"] == "shutdown" for d in docs)  # other open conversations
    assert stat.S_IMODE(flows.stat().st_mode) in (0o600, 0o640)
