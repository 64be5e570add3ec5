"""A real daemon (as root: privilege split) tells a command and a webhook about an alert.

With `[notify.desktop]` it also forks the desktop helper, which must hold only CAP_SETGID and
CAP_SETUID and end with the daemon (its deliveries are tested in test_desktop_helper.py).

A program connects out to this host's own non-loopback address (its first connection:
`process.first_connection`); the daemon's analyzer, running as an unprivileged user, runs
the `[notify.command]` program with the note as JSON on stdin and POSTs it to a webhook on
127.0.0.1 whose URL holds a secret that must not reach the log. Without a non-loopback
address the test skips.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import requires_root
from tests.daemon.harness import REPO, daemon_argv, stop

pytestmark = [
    pytest.mark.daemon,
    pytest.mark.timeout(90),
    requires_root,
    pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash (/dev/tcp)"),
]


def _own_address() -> str:
    """This host's address on its default route (nothing is sent: UDP connect only)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        addr: str = probe.getsockname()[0]
    except OSError:
        pytest.skip("no default route: no non-loopback address to connect to")
    finally:
        probe.close()
    if addr.startswith("127."):
        pytest.skip("only loopback addresses here")
    return addr


class _Hook(BaseHTTPRequestHandler):
    bodies: list[bytes] = []

    def do_POST(self) -> None:  # noqa: N802  # http.server's name
        self.bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder the analyzer's user may write (the command runs as that user)."""
    path = Path(tempfile.mkdtemp(prefix="nwnotify-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_daemon_notifies_a_command_and_a_webhook(open_dir: Path) -> None:
    addr = _own_address()
    hook = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    notes = open_dir / "notes.jsonl"
    config = open_dir / "config.toml"
    config.write_text(
        "[daemon]\ncapture = false\ninterval = 0.3\n\n"
        '[notify]\nrules = ["process.first_connection"]\nmin_severity = "info"\n\n'
        f'[notify.command]\nargv = ["/bin/sh", "-c", "cat >> {notes}; echo >> {notes}"]\n\n'
        f'[notify.webhook]\nurl = "http://127.0.0.1:{hook.server_address[1]}/hook/s3cret"\n\n'
        "[notify.desktop]\n"
    )
    listener = socket.create_server((addr, 0))
    daemon = subprocess.Popen(
        daemon_argv(open_dir / "n.db", open_dir / "n.sock", "--config", str(config)),
        cwd=REPO,
        stderr=subprocess.PIPE,
        text=True,
    )
    client = server_side = None
    try:
        kids: dict[int, tuple[str, str]] = {}
        helpers: list[int] = []
        for _ in range(600):  # until the daemon is ready and its helper is found
            if (open_dir / "n.sock").exists():
                kids = {
                    c: (_status(c, "CapEff"), _status(c, "NoNewPrivs"))
                    for c in _children(daemon.pid)
                }
                helpers = [c for c, (caps, _nnp) in kids.items() if caps == f"{0xC0:016x}"]
                if helpers:
                    break
            time.sleep(0.05)
        time.sleep(1.0)  # the daemon's first ticks see the programs already running
        # a program connecting out: its first connection is news
        port = listener.getsockname()[1]
        client = subprocess.Popen(["bash", "-c", f"exec 3<>/dev/tcp/{addr}/{port}; sleep 30"])
        server_side, _ = listener.accept()
        for _ in range(300):
            if notes.exists() and notes.read_text().strip() and _Hook.bodies:
                break
            time.sleep(0.05)
    finally:
        if client is not None:
            client.kill()
            client.wait()
        if server_side is not None:
            server_side.close()
        listener.close()
        stop(daemon, timeout=15)
        hook.shutdown()
        hook.server_close()
    assert daemon.stderr is not None
    log = daemon.stderr.read()
    assert daemon.returncode == 0, log
    got = [json.loads(line) for line in notes.read_text().splitlines() if line.strip()]
    firsts = [n for n in got if n["alerts"][0]["rule"] == "process.first_connection"]
    assert firsts and firsts[0]["title"] == "netwatch: Program connects out for the first time"
    posted = [json.loads(b) for b in _Hook.bodies]
    assert any(n["alerts"][0]["rule"] == "process.first_connection" for n in posted)
    assert "s3cret" not in log
    # the desktop helper: a child of the daemon keeping only CAP_SETGID and CAP_SETUID
    assert len(helpers) == 1, log
    assert kids[helpers[0]][1] == "1"
    assert not Path(f"/proc/{helpers[0]}").exists()  # gone with the daemon


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdecimal():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _status(pid: int, field: str) -> str:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return ""
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return line.split(":", 1)[1].strip()
    return ""
