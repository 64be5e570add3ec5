"""A root daemon's desktop helper delivers to another user's session bus as that user.

As root: a session bus and the recording notification server (tests/notification_server.py)
run as `nobody` under a runtime folder of nobody's (mode 0700, like `/run/user/UID`); the
helper is started by a small single-threaded script, as the daemon starts it, and given one
note. The server must record it, and the "open" action's program must run as nobody with the
alert's id: the helper's delivery child became the user instead of talking as root.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from netwatch.daemon.desktop_helper import HelperChannel, decode_note
from netwatch.notify.note import single
from tests.builders import make_alert

ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "notification_server.py"
NOBODY = 65534
NOBODY_ARGV = [
    "setpriv",
    f"--reuid={NOBODY}",
    f"--regid={NOBODY}",
    "--clear-groups",
    "--inh-caps=-all",
]

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (switches to nobody)"),
    pytest.mark.skipif(shutil.which("dbus-daemon") is None, reason="needs dbus-daemon"),
    pytest.mark.timeout(120),
]

SCRIPT = """
import sys, time
from pathlib import Path
from netwatch.daemon.desktop_helper import start_desktop_helper
from netwatch.model import Severity
from netwatch.notify.note import single
from tests.builders import make_alert

run_user, opened = Path(sys.argv[1]), Path(sys.argv[2])
link = start_desktop_helper(sys.argv[3:], run_user)
link.send(single(make_alert(severity=Severity.HIGH, alert_id="vpn.leak:00000000ab:1")))
for _ in range(1000):
    if opened.exists() and opened.read_text().endswith("\\n"):
        break
    time.sleep(0.02)
link.close()
"""

WRITE_UID = ["/bin/sh", "-c", 'echo "$(id -u) $1 $DISPLAY" >> "$0"']


def _as_nobody(argv: list[str], **kw: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([*NOBODY_ARGV, *argv], text=True, **kw)


@pytest.fixture
def nobody_session() -> Iterator[tuple[Path, Path]]:
    """(run_user folder, output folder) with nobody's bus and notification server running."""
    base = Path(tempfile.mkdtemp(prefix="nw-desktop-"))
    base.chmod(0o755)
    run_user = base / "run_user"
    run_user.mkdir(mode=0o755)
    home = run_user / str(NOBODY)
    home.mkdir(mode=0o700)
    out = base / "out"
    out.mkdir(mode=0o755)
    for folder in (home, out):
        os.chown(folder, NOBODY, NOBODY)
    address = f"unix:path={home / 'bus'}"
    procs = []
    try:
        procs.append(
            _as_nobody(
                ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address={address}"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        for _ in range(250):
            if (home / "bus").exists():
                break
            time.sleep(0.02)
        server = _as_nobody(
            [sys.executable, str(SERVER), address, str(out / "received.jsonl")],
            stdout=subprocess.PIPE,
        )
        procs.append(server)
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        yield run_user, out
    finally:
        for proc in reversed(procs):
            proc.terminate()
            proc.wait(10)
        shutil.rmtree(base, ignore_errors=True)


def test_helper_delivers_as_the_bus_owner(nobody_session: tuple[Path, Path]) -> None:
    run_user, out = nobody_session
    opened = out / "opened"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(run_user), str(opened)]
        + [*WRITE_UID, str(opened), "{alert}"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (got,) = (json.loads(line) for line in (out / "received.jsonl").read_text().splitlines())
    assert got["summary"] == "netwatch: vpngate.list_fetch"
    assert got["actions"] == ["open", "Open in netwatch"]
    # run as the user, for the alert, on the display the user's session names
    assert opened.read_text() == f"{NOBODY} vpn.leak:00000000ab:1 :7\n"


def _datagram(alert_id: str) -> bytes:
    """What the analyzer's `HelperChannel` sends for an alert with this id."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    try:
        HelperChannel(ours, pid=-1).send(single(replace(make_alert(), id=alert_id)))
        return theirs.recv(65536)
    finally:
        ours.close()
        theirs.close()


def test_the_helper_takes_only_well_formed_notes() -> None:
    good = decode_note(_datagram("vpn.leak:0a1b2c3d4e:1700000000"))
    assert good is not None and good.alerts[0].id == "vpn.leak:0a1b2c3d4e:1700000000"
    assert good.title == "netwatch: vpngate.list_fetch"
    assert decode_note(_datagram("--output=/etc/passwd")) is None  # would be an option
    assert decode_note(_datagram("vpn.leak:ab:1")) is None  # not the engine's shape
    assert decode_note(b"{not json") is None
    assert decode_note(b'{"title": "t"}') is None
