"""A root daemon's desktop notifier: a small child that delivers each note as its user.

A session bus admits only its own user and root (dbus-daemon's default rules), and
`/run/user/UID` is the user's alone (mode 0700). The privilege-split daemon's analyzer runs
as `netwatch` and may do neither; and a root process talking to a desktop would run the
"open" action's program as root. So a daemon started as root forks this helper at start,
while it is still one thread (like the collector, `daemon/split.py`). The helper keeps uid 0
with only CAP_SETUID and CAP_SETGID (and `no_new_privs`), dies with its parent, and for each
note and each logged-in user forks a short-lived child that becomes that user for good
(`sources.privdrop.become`), connects to the user's bus as the user, sends the note
(`notify.desktop.DesktopChannel`) and, where the "open" action was offered, waits up to
`ACTION_WAIT` seconds for the user to pick it and runs `open_command` as that user, in that
user's session environment (bus, runtime folder, home, and the display the user's systemd
manager names). Root's own session (`/run/user/0`) is not notified.

The analyzer's desktop worker (rate limit, digest, queue) hands each note over a
SOCK_SEQPACKET socketpair (`HelperChannel`): one datagram per note, the codec's alert record
of its first alert with the note's title, text and severity.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pwd
import signal
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from netwatch import codec
from netwatch.daemon.split import fork_child, reap
from netwatch.model import Severity
from netwatch.model.alert import ALERT_ID
from netwatch.notify.desktop import RUN_USER, DesktopChannel
from netwatch.notify.note import Note
from netwatch.sources.privdrop import become, die_with_parent, keep_only

log = logging.getLogger("netwatch.daemon")

CAP_SETGID = 6
CAP_SETUID = 7
HELPER_CAPS = frozenset({CAP_SETGID, CAP_SETUID})
"""What the helper keeps: changing to each user it notifies, nothing else."""
ACTION_WAIT = 600.0
"""Seconds a delivery child waits for the user to pick "open" (or close the notification)."""
MAX_CHILDREN = 32
"""Delivery children at once; a note finding this many is skipped, and logged."""
MAX_NOTE = 64 * 1024
"""Largest datagram the helper reads; bodies are cut to `MAX_TEXT` before sending."""
MAX_TEXT = 4000
SEND_TIMEOUT = 2.0
JEEPNEY = ("jeepney", "jeepney.io.threading", "jeepney.bus_messages", "jeepney.wrappers")
"""Imported before any user switch: a user may not be able to read the interpreter's
folder."""


class HelperChannel:
    """The analyzer's side: a `notify.worker.Channel` that hands notes to the helper."""

    name = "desktop"

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock = sock
        self.pid = pid
        sock.settimeout(SEND_TIMEOUT)

    def send(self, note: Note) -> None:
        """One datagram; OSError when the helper is gone or does not take it in time."""
        record: dict[str, Any] = {
            "title": note.title[:MAX_TEXT],
            "body": note.body[:MAX_TEXT],
            "severity": note.severity.value,
            "alert": codec.alert_to_dict(note.alerts[0]),
        }
        data = json.dumps(record, separators=(",", ":")).encode()
        if len(data) > MAX_NOTE:
            record["alert"]["evidence"] = []
            data = json.dumps(record, separators=(",", ":")).encode()[:MAX_NOTE]
        self.sock.send(data)

    def close(self) -> None:
        """End the helper (it exits when the socket closes) and reap it."""
        self.sock.close()
        reap(self.pid)


def start_desktop_helper(open_command: Sequence[str], run_user: Path = RUN_USER) -> HelperChannel:
    """Fork the helper (call as root, before any thread starts) and return its channel."""
    for name in JEEPNEY:
        __import__(name)
    ours, pid = fork_child(
        lambda theirs: run_helper(theirs, list(open_command), run_user),
        socket.SOCK_SEQPACKET,
        "desktop notification helper",
    )
    return HelperChannel(ours, pid)


def run_helper(sock: socket.socket, open_command: list[str], run_user: Path) -> int:
    """The helper's loop: a note in, a delivery child per logged-in user; 0 at end of input."""
    die_with_parent(signal.SIGTERM)
    # Nothing of the daemon's (store, sockets, the collector's channel) stays open here.
    os.closerange(3, sock.fileno())
    os.closerange(sock.fileno() + 1, os.sysconf("SC_OPEN_MAX"))
    keep_only(HELPER_CAPS)
    children: set[int] = set()
    sock.settimeout(1.0)
    told_full = False
    while True:
        _reap_done(children)
        try:
            data = sock.recv(MAX_NOTE)
        except TimeoutError:
            continue
        if not data:
            return 0
        note = decode_note(data)
        if note is None:
            log.warning("desktop notification helper: ignored a malformed note")
            continue
        for uid, folder in logged_in(run_user):
            if len(children) >= MAX_CHILDREN:
                if not told_full:
                    told_full = True
                    log.warning(
                        "desktop notifications: %d deliveries waiting; skipping", MAX_CHILDREN
                    )
                break
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    sock.close()
                    code = deliver_as(uid, folder, note, open_command)
                except Exception as exc:  # a delivery child reports one line and exits
                    log.warning("desktop notification for uid %d failed: %s", uid, exc)
                finally:
                    logging.shutdown()
                    os._exit(code)
            children.add(pid)


def _reap_done(children: set[int]) -> None:
    for pid in list(children):
        with contextlib.suppress(ChildProcessError):
            done, _status = os.waitpid(pid, os.WNOHANG)
            if not done:
                continue
        children.discard(pid)


def decode_note(data: bytes) -> Note | None:
    """The note a datagram carries, or None when it is not one."""
    try:
        record: Any = json.loads(data)
        alert = codec.alert_from_dict(record["alert"])
        title, body = str(record["title"]), str(record["body"])
        severity = Severity(record["severity"])
    except (ValueError, KeyError, TypeError, codec.CodecError):
        return None
    if not ALERT_ID.fullmatch(alert.id):  # model.alert's: the shape `watch --alert` takes
        return None  # it becomes an argument of open_command: rule:digest:time, nothing else
    return Note(title[:MAX_TEXT], body[:MAX_TEXT], severity, (alert,))


def logged_in(run_user: Path) -> list[tuple[int, Path]]:
    """(uid, runtime folder) of each user with a folder under `run_user` that is theirs.

    The bus socket inside is checked by the delivery child, as the user: the folder is 0700.
    """
    found: list[tuple[int, Path]] = []
    try:
        entries = sorted(run_user.iterdir())
    except OSError:
        return found
    for entry in entries:
        if not entry.name.isdecimal() or entry.name == "0":
            continue
        try:
            st = entry.lstat()
        except OSError:
            continue
        if st.st_uid == int(entry.name) and entry.is_dir():
            found.append((st.st_uid, entry))
    return found


def deliver_as(uid: int, folder: Path, note: Note, open_command: list[str]) -> int:
    """Become `uid`, send `note` to its session bus, wait for its action; the exit code."""
    pw = pwd.getpwuid(uid)
    become(uid, pw.pw_gid)
    die_with_parent(signal.SIGTERM)  # after `become`: a change of user clears it
    bus = folder / "bus"
    if not bus.is_socket():
        return 0  # logged in without a session bus: nothing to tell
    address = f"unix:path={bus}"
    env = {
        "DBUS_SESSION_BUS_ADDRESS": address,
        "XDG_RUNTIME_DIR": str(folder),
        "HOME": pw.pw_dir,
        "USER": pw.pw_name,
        "LOGNAME": pw.pw_name,
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
    }
    channel = DesktopChannel(open_command, buses=lambda: [address], env=env)
    try:
        channel.send(note)
        if channel.offered:
            channel.answered.acquire(timeout=ACTION_WAIT)
    finally:
        channel.close()
    return 0
