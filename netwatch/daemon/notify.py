"""sd_notify over `$NOTIFY_SOCKET` with the stdlib socket (READY, WATCHDOG, STATUS, STOPPING).

Does nothing when the variable is unset (not under systemd). An address starting with `@` is
in the abstract namespace. `watchdog_interval` is half of `$WATCHDOG_USEC`, as sd_watchdog_enabled
advises, or None when the unit has no WatchdogSec.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    """Sends state lines to systemd; failures are ignored (notification is best effort)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        self._addr = "\0" + addr[1:] if addr.startswith("@") else addr
        self._sock: socket.socket | None = None
        self.watchdog_interval: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if usec.isdecimal() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 2e6

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given."""
        return bool(self._addr)

    def send(self, *lines: str) -> bool:
        """Send `KEY=value` lines in one datagram; True when it was sent."""
        if not self._addr:
            return False
        data = "\n".join(lines).encode("utf-8")
        if self._sock is not None:
            try:
                self._sock.send(data, socket.MSG_DONTWAIT)
                return True
            except OSError:
                pass  # systemd re-executed (a new socket file): try the path
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                # Never block the loop on a reader that does not keep up.
                s.sendto(data, socket.MSG_DONTWAIT, self._addr)
        except OSError:
            return False
        return True

    def connect(self) -> None:
        """Connect to the notify socket now and keep the connection: the daemon's analyzer
        connects as root before it drops, since its own user may not reach the socket's path
        (a datagram socket's permission is checked when it connects)."""
        if self._addr and self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                sock.connect(self._addr)
            except OSError:
                sock.close()
                return
            self._sock = sock

    def ready(self, status: str) -> None:
        """Startup finished."""
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def watchdog(self) -> None:
        """The loop is alive."""
        self.send("WATCHDOG=1")

    def status(self, text: str) -> None:
        """A one-line status for `systemctl status`."""
        self.send(f"STATUS={text}")

    def reloading(self) -> None:
        """A reload starts."""
        self.send("RELOADING=1")

    def reloaded(self, status: str) -> None:
        """A reload finished (successfully or not)."""
        self.send("READY=1", f"STATUS={status}")

    def stopping(self) -> None:
        """Shutdown starts."""
        self.send("STOPPING=1", "STATUS=stopping")
