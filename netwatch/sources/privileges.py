"""What this process may see: root or capabilities, turned into a `SourceStatus`.

Without root, the socket list is still complete (the kernel shows every socket to everyone),
but /proc/<pid>/fd of other users' processes is closed, so their sockets have no process,
and packet capture needs CAP_NET_RAW. This module says so in words a user can act on,
including the exact `setcap` line for the interpreter that runs netwatch.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from netwatch.model import SourceStatus

CAP_DAC_READ_SEARCH = 2
CAP_NET_ADMIN = 12
CAP_NET_RAW = 13
CAP_SYS_PTRACE = 19

SETCAP = "cap_net_raw,cap_net_admin,cap_sys_ptrace,cap_dac_read_search+eip"


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


def setcap_hint() -> str:
    """How to get full visibility: sudo, or capabilities on the real interpreter."""
    python = os.path.realpath(sys.executable)
    return f"run with sudo, or: sudo setcap {SETCAP} {python}"


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
    return line if status.privileged else f"{line}; {setcap_hint()}"
