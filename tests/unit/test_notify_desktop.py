"""The desktop channel on a real session bus: `dbus-daemon --session` started here, with
tests/notification_server.py owning org.freedesktop.Notifications and recording each call.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netwatch.model import Severity
from netwatch.notify.desktop import DesktopChannel, session_buses
from netwatch.notify.note import digest, single
from tests.builders import make_alert

SERVER = Path(__file__).resolve().parents[1] / "notification_server.py"

pytestmark = pytest.mark.skipif(
    shutil.which("dbus-daemon") is None, reason="needs dbus-daemon (scripts/install-system-deps)"
)


@pytest.fixture
def bus(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, Path]]:
    """(address of a fresh session bus with the recording server on it, its record file).

    Parametrized indirectly, the server lists those capabilities."""
    caps = getattr(request, "param", "actions,body")
    address = f"unix:path={tmp_path / 'bus'}"
    daemon = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address={address}"],
        stdout=subprocess.DEVNULL,
    )
    record = tmp_path / "received.jsonl"
    server = None
    try:
        for _ in range(200):  # until the socket exists
            if (tmp_path / "bus").exists():
                break
            time.sleep(0.02)
        server = subprocess.Popen(
            [sys.executable, str(SERVER), address, str(record), caps],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None and server.stdout.readline() == "ready\n"
        yield address, record
    finally:
        for proc in (server, daemon):
            if proc is not None:
                proc.terminate()
                proc.wait(10)


def _wait_for(path: Path, lines: int) -> str:
    for _ in range(500):
        if path.exists() and path.read_text().count("\n") >= lines:
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} never written")


def test_notify_reaches_the_session_bus_with_an_open_action(
    bus: tuple[str, Path], tmp_path: Path
) -> None:
    address, record = bus
    opened = tmp_path / "opened"
    write = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')"
    channel = DesktopChannel(
        open_command=[sys.executable, "-c", write, str(opened), "{alert}"],
        buses=lambda: [address],
    )
    try:
        channel.send(single(make_alert(severity=Severity.HIGH, alert_id="vpn.leak:ab:1")))
        channel.send(digest([make_alert(alert_id=f"a{i}") for i in range(3)]))
        # the server picked "open" on each note: the command got each one's (first) alert id
        assert sorted(_wait_for(opened, 2).split()) == ["a0", "vpn.leak:ab:1"]
    finally:
        channel.close()
    first, second = (json.loads(line) for line in record.read_text().splitlines())
    assert first["app"] == "netwatch"
    assert first["summary"] == "netwatch: vpngate.list_fetch"
    assert first["body"] == "vpnclient fetched the VPN Gate relay list"
    assert first["actions"] == ["open", "Open in netwatch"]
    assert first["hints"]["urgency"] == 2  # high -> critical urgency
    assert second["summary"] == "netwatch: 3 alerts"
    assert second["body"].count("\n") == 2  # one line per alert


def test_without_open_command_no_action_is_offered(bus: tuple[str, Path]) -> None:
    address, record = bus
    channel = DesktopChannel(buses=lambda: [address])
    try:
        channel.send(single(make_alert(severity=Severity.LOW)))
    finally:
        channel.close()
    (got,) = (json.loads(line) for line in record.read_text().splitlines())
    assert got["actions"] == [] and got["hints"]["urgency"] == 0


def test_an_unreachable_bus_is_an_error_and_a_reachable_one_still_gets_the_note(
    bus: tuple[str, Path], tmp_path: Path
) -> None:
    address, record = bus
    gone = f"unix:path={tmp_path / 'nobody-here'}"
    both = DesktopChannel(buses=lambda: [gone, address])
    try:
        both.send(single(make_alert()))  # one bus took it: no error
    finally:
        both.close()
    assert len(record.read_text().splitlines()) == 1
    only_gone = DesktopChannel(buses=lambda: [gone])
    with pytest.raises(OSError, match="nobody-here"):
        only_gone.send(single(make_alert()))


def test_session_buses_are_found_under_run_user(tmp_path: Path) -> None:
    for uid in ("1000", "1001"):
        (tmp_path / uid).mkdir()
    (tmp_path / "not-a-uid").mkdir()
    socks = []
    for folder in ("1000", "not-a-uid"):
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(tmp_path / folder / "bus"))
        socks.append(s)
    (tmp_path / "1001" / "bus").write_text("a file, not a socket")
    try:
        assert session_buses(tmp_path) == [f"unix:path={tmp_path / '1000' / 'bus'}"]
    finally:
        for s in socks:
            s.close()


@pytest.mark.parametrize("bus", ["body,body-markup"], indirect=True)
def test_markup_servers_get_the_text_escaped_and_no_action(bus: tuple[str, Path]) -> None:
    address, record = bus
    channel = DesktopChannel(open_command=["true"], buses=lambda: [address])
    try:
        channel.send(single(make_alert(message="<b>evil</b> & co")))
    finally:
        channel.close()
    (got,) = (json.loads(line) for line in record.read_text().splitlines())
    assert got["body"] == "&lt;b&gt;evil&lt;/b&gt; &amp; co"
    assert got["actions"] == []  # the server lists no "actions"


def test_open_command_gets_the_sessions_display_and_nothing_else(
    bus: tuple[str, Path], tmp_path: Path
) -> None:
    # As the root helper runs it: a given environment, plus the display variables the user's
    # systemd manager names (the test server stands in for it), nothing else of its list.
    address, _record = bus
    opened = tmp_path / "opened"
    show = 'echo "$DISPLAY $WAYLAND_DISPLAY ${LD_PRELOAD:-unset}" >> "$0"'
    channel = DesktopChannel(
        open_command=["/bin/sh", "-c", show, str(opened)],
        buses=lambda: [address],
        env={"PATH": "/usr/bin:/bin"},
    )
    try:
        channel.send(single(make_alert()))
        assert _wait_for(opened, 1) == ":7 wayland-7 unset\n"
    finally:
        channel.close()
