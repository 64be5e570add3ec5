"""Helpers for daemon tests: run `netwatch daemon` as a subprocess, read its socket, make traffic.

Traffic goes only to a peer namespace the test's `Lab` creates (documentation addresses):
each "program" is a copy of the Python interpreter with its own name and path, so
`process.first_connection` sees a new program per copy.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from netwatch.daemon.client import DaemonFeed
from netwatch.model import Alert, Snapshot
from tests.netns import Lab, Peer

REPO = Path(__file__).resolve().parent.parent.parent
PEER_IP = "198.51.100.20"
PEER_PORT = 8443

# Accepts and holds connections (no reply) so clients stay ESTABLISHED; bounded at 90 s.
HOLD_SERVER = r"""
import socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(512); s.settimeout(1.0)
held, end = [], time.monotonic() + 90
while time.monotonic() < end:
    try:
        held.append(s.accept()[0])
    except socket.timeout:
        pass
"""

# Connects to the peer, keeps the connection `hold` seconds, exits.
PROGRAM = r"""
import socket, sys, time
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
time.sleep(float(sys.argv[3]))
c.close()
"""

# Connects to the Unix socket argv[1] and closes at once, as fast as it can, for argv[2]
# seconds; prints how many connects got in and how many failed (backlog full).
STORM = r"""
import socket, sys, time
path, end = sys.argv[1], time.monotonic() + float(sys.argv[2])
done = failed = 0
while time.monotonic() < end:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(path)
        done += 1
    except OSError:
        failed += 1
    s.close()
print(done, failed)
"""


def start_peer_server(lab: Lab, peer: Peer, port: int = PEER_PORT) -> None:
    """Start the holding server in the peer namespace and wait until it listens."""
    lab.spawn(peer.ns, [sys.executable, "-c", HOLD_SERVER, peer.ip, str(port)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        res = lab.run(peer.ns, ["ss", "-Hltn", f"sport = :{port}"], timeout=5)
        if res.stdout.strip():
            return
        time.sleep(0.1)
    raise AssertionError("peer server did not start")


def make_programs(folder: Path, n: int, prefix: str = "nwdmn") -> list[Path]:
    """Copies of the interpreter named `<prefix>-p<i>`: each is a distinct program."""
    folder.mkdir(parents=True, exist_ok=True)
    real = Path(os.path.realpath(sys.executable))
    out = []
    for i in range(n):
        dst = folder / f"{prefix}-p{i}"
        shutil.copy2(real, dst)
        out.append(dst)
    return out


def run_programs(
    lab: Lab, programs: Sequence[Path], hold: float, gap: float = 0.0, ip: str = PEER_IP
) -> list[subprocess.Popen[bytes]]:
    """Start each program in the lab's host namespace, `gap` seconds apart."""
    procs = []
    for prog in programs:
        procs.append(
            lab.spawn(
                lab.host,
                [str(prog), "-c", PROGRAM, ip, str(PEER_PORT), str(hold)],
                env=_python_env(),
            )
        )
        if gap:
            time.sleep(gap)
    return procs


def _python_env() -> dict[str, str]:
    """Let an interpreter copy outside its prefix find the standard library."""
    env = dict(os.environ)
    env["PYTHONHOME"] = sys.base_prefix
    return env


def daemon_argv(db: Path, sock: Path, *extra: str) -> list[str]:
    """The daemon's command line with a temp store and socket."""
    return [sys.executable, "-m", "netwatch", "daemon", "--db", str(db), "--socket", str(sock),
            *extra]  # fmt: skip


def lab_daemon_argv(db: Path, sock: Path, *extra: str) -> list[str]:
    """`daemon_argv` for a daemon in a lab's host namespace: its peers stand for hosts on the
    internet, which a real host cannot list, so other namespaces' sockets are not listed."""
    return daemon_argv(db, sock, "--no-containers", *extra)


class Collector:
    """Reads snapshots from the daemon socket in a thread; remembers every announced alert."""

    def __init__(self, sock: Path) -> None:
        self.feed = DaemonFeed(sock, backoff=0.05, max_backoff=0.2)
        self.snapshots: list[Snapshot] = []
        self.alerts: dict[str, Alert] = {}
        self._lock = threading.RLock()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for snap in self.feed.snapshots():
            with self._lock:
                self.snapshots.append(snap)
                for a in snap.alerts:
                    self.alerts[a.id] = a

    def wait_for(self, cond: Callable[[Collector], bool], timeout: float) -> bool:
        """Poll `cond` until true or `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if cond(self):
                    return True
            time.sleep(0.05)
        return False

    def announced(self) -> dict[str, Alert]:
        """A copy of the alerts seen so far, by id."""
        with self._lock:
            return dict(self.alerts)

    def close(self) -> None:
        """Stop reading."""
        self.feed.close()
        self._thread.join(5)


def export(db: Path, fmt: str = "jsonl", *args: str) -> subprocess.CompletedProcess[str]:
    """Run `netwatch export` on `db`."""
    return subprocess.run(
        [sys.executable, "-m", "netwatch", "export", "--db", str(db), "--format", fmt, *args],
        capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
    )  # fmt: skip


def exported_ids(db: Path) -> set[str]:
    """The ids of every alert `netwatch export --format jsonl` writes."""
    res = export(db)
    assert res.returncode == 0, res.stderr
    return {json.loads(line)["id"] for line in res.stdout.splitlines()}


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 5.0) -> float:
    """Send `sig` and return how long the process took to exit (raises if it did not)."""
    started = time.monotonic()
    proc.send_signal(sig)
    proc.wait(timeout)
    return time.monotonic() - started
