"""The syslog sink against a real rsyslog on loopback (UDP and TCP with octet counting).

The test starts Debian's rsyslogd with its own config, ports, work directory and pid file
(no system logging is touched), sends alerts through `SyslogSender`, and checks what rsyslog
parsed: its RFC 5424 re-emission matches the RFC 5424 regex, and the structured-data params
(rule, severity, process, remote) arrive intact, including characters that need escaping.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from netwatch.export.syslog import SD_ID, SyslogSender, SyslogTarget
from netwatch.model import Severity
from tests.builders import make_alert, make_process
from tests.conftest import requires_tools
from tests.unit.test_export import RFC5424, sd_params

pytestmark = [pytest.mark.live, requires_tools("rsyslogd"), pytest.mark.timeout(60)]

CONF = """
global(workDirectory="{work}")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")
template(name="fields" type="string"
         string="%app-name%|%msgid%|%syslogseverity-text%|%structured-data%|%msg%\\n")
*.* action(type="omfile" file="{work}/protocol23.log" template="RSYSLOG_SyslogProtocol23Format")
*.* action(type="omfile" file="{work}/fields.log" template="fields")
"""


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def rsyslog(tmp_path: Path) -> Iterator[tuple[Path, int, int]]:
    work = tmp_path / "rsyslog"
    work.mkdir()
    udp, tcp = _free_port(socket.SOCK_DGRAM), _free_port(socket.SOCK_STREAM)
    conf = work / "rsyslog.conf"
    conf.write_text(CONF.format(work=work, udp=udp, tcp=tcp))
    proc = subprocess.Popen(
        ["rsyslogd", "-n", "-f", str(conf), "-i", str(work / "rsyslogd.pid")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", tcp)) == 0:
                    break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        yield work, udp, tcp
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


def _lines(path: Path, n: int, timeout: float = 10) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            lines = path.read_text(encoding="utf-8").splitlines()
            if len(lines) >= n:
                return lines
        time.sleep(0.05)
    raise AssertionError(f"rsyslog wrote {path.read_text() if path.exists() else 'nothing'}")


@pytest.mark.parametrize("protocol", ["udp", "tcp"])
def test_rsyslog_parses_our_rfc5424(rsyslog: tuple[Path, int, int], protocol: str) -> None:
    work, udp, tcp = rsyslog
    port = udp if protocol == "udp" else tcp
    sender = SyslogSender(SyslogTarget("127.0.0.1", port, protocol, "local3"))
    alerts = [
        replace(
            make_alert(
                f"rule.n{i}",
                Severity.HIGH,
                alert_id=f"id{i}",
                process=make_process(f'vpn "client"] {i}'),
            ),
            message=f"alert number {i}\nsecond line",
        )  # fmt: skip
        for i in range(5)
    ]
    if protocol == "udp":
        time.sleep(0.3)  # UDP has no handshake: let imudp finish binding
    for a in alerts:
        assert sender.send(a)
    sender.close()
    lines = _lines(work / "protocol23.log", 5)
    assert len(lines) == 5
    for i, line in enumerate(lines):
        m = RFC5424.match(line)
        assert m, line
        assert int(m["pri"]) == 19 * 8 + 3  # local3.err
        assert m["app"] == "netwatch"
        assert m["msgid"] == "alert"
        params = sd_params(m["sd"])
        assert params["rule"] == f"rule.n{i}"
        assert params["severity"] == "high"
        assert params["process"] == f'vpn "client"] {i}'
        assert params["remote"] == "90.189.249.23"
        assert m["msg"].strip() == f"alert number {i} second line"
    fields = _lines(work / "fields.log", 5)
    app, msgid, sev, sd, msg = fields[0].split("|", 4)
    assert (app, msgid, sev) == ("netwatch", "alert", "err")
    assert sd.startswith(f"[{SD_ID} ")
    assert msg.strip() == "alert number 0 second line"


def test_sender_survives_a_dead_server() -> None:
    port = _free_port(socket.SOCK_STREAM)  # nothing listens
    sender = SyslogSender(SyslogTarget("127.0.0.1", port, "tcp"), timeout=0.5)
    assert sender.send(make_alert()) is False
    assert sender.failed == 1
    sender.close()
