"""What this process may see: root or capabilities, turned into a `SourceStatus`.

Without root, the socket list is still complete (the kernel shows every socket to everyone),
but /proc/<pid>/fd of other users' processes is closed, so their sockets have no process,
and packet capture needs CAP_NET_RAW. This module says so in words a user can act on.

It never advises `setcap` on an interpreter: in a venv `bin/python` is a symlink to the
system's `/usr/bin/python3.x`, so capabilities given to it would give raw sockets, ptrace
and read-any-file to every Python program of every user. The full view without root is the
daemon (root, limited capabilities) with dashboards of the `netwatch` group attached to it,
as OpenSnitch and Little Snitch split a privileged daemon from an unprivileged UI.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from netwatch.model import SourceStatus

CAP_DAC_READ_SEARCH = 2
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SYS_PTRACE = 19

FULL_VIEW_HINT = (
    "for the full view run it with sudo, or attach to the netwatch daemon as a member of the "
    "netwatch group (README: Running as a service)"
)
"""How to see everything: never capabilities on a (shared) interpreter, see the module doc."""


@dataclass(frozen=True, slots=True)
class Privileges:
    """The effective uid and capabilities that decide what netwatch can see."""

    euid: int
    caps: int

    @property
    def root(self) -> bool:
        """Running as root (uid 0 has every capability it needs)."""
        return self.euid == 0

    def has(self, cap: int) -> bool:
        """Whether capability number `cap` is effective."""
        return self.root or bool(self.caps >> cap & 1)

    @property
    def sees_all_processes(self) -> bool:
        """Other users' /proc/<pid>/fd is readable (root, or ptrace + dac_read_search)."""
        return self.has(CAP_SYS_PTRACE) and self.has(CAP_DAC_READ_SEARCH)

    @property
    def can_capture(self) -> bool:
        """Packet capture is allowed (raw sockets)."""
        return self.has(CAP_NET_RAW) and self.has(CAP_NET_ADMIN)


def effective_caps(status_text: str) -> int:
    """The CapEff bitmask from the text of /proc/<pid>/status (0 if absent or garbled)."""
    for line in status_text.splitlines():
        if line.startswith("CapEff:"):
            try:
                return max(0, int(line.split(":", 1)[1].strip(), 16))
            except ValueError:
                return 0
    return 0


def probe(proc_root: str = "/proc") -> Privileges:
    """Read this process's effective uid and capabilities."""
    try:
        with open(f"{proc_root}/self/status", encoding="ascii", errors="replace") as fh:
            caps = effective_caps(fh.read())
    except OSError:
        caps = 0
    return Privileges(euid=os.geteuid(), caps=caps)


def missing_lines(privs: Privileges, hidden_sockets: int = 0, counters: bool = True) -> list[str]:
    """One short phrase per thing this process cannot see."""
    missing: list[str] = []
    if not privs.sees_all_processes:
        if hidden_sockets == 1:
            missing.append("1 socket of another user's process shows no process")
        else:
            count = f"{hidden_sockets} sockets" if hidden_sockets else "sockets"
            missing.append(f"{count} of other users' processes show no process")
    if not counters:
        missing.append("TCP byte counters (netlink sock_diag is unavailable)")
    return missing


def describe(status: SourceStatus) -> str | None:
    """The one stderr line for `snapshot` and friends: what is missing and how to get it."""
    if not status.missing:
        return None
    line = f"not everything is visible: {'; '.join(status.missing)}"
    return line if status.privileged else f"{line}; {FULL_VIEW_HINT}"
