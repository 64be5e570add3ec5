"""Giving up privileges for the daemon's split (docs/architecture.md, section 7).

Two ways out of root, both one-way:

* `keep_only(caps)` (the collector): drop every other capability from the bounding,
  effective, permitted, inheritable and ambient sets, then set `no_new_privs`. The uid stays
  0, so /proc entries of root's own processes stay readable without a capability.
* `become(uid, gid)` (the analyzer): `setgroups`, `setresgid`, `setresuid` to an
  unprivileged user (the kernel clears every capability on the way from uid 0), then
  `no_new_privs`, then a check that no capability is left.

Done through ctypes (`prctl`, `capset`) in the process itself rather than by exec'ing
util-linux `setpriv`: the collector is a fork of the daemon that keeps the socket tables'
caches and needs no second interpreter start (~0.3 s and ~25 MB), and `setpriv` is one more
program the daemon would depend on. Credentials are per thread on Linux (glibc carries
`setuid` to every thread, but not `capset` or `prctl`), so both refuse to run while another
thread exists: a thread started earlier would keep what the process gave up.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import threading

from netwatch.errors import NetwatchError

PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
_CAP_VERSION_3 = 0x20080522


class PrivilegeDropError(NetwatchError):
    """Privileges could not be given up: the daemon stops rather than run with them."""


class _CapHeader(ctypes.Structure):
    _fields_ = (("version", ctypes.c_uint32), ("pid", ctypes.c_int))


class _CapData(ctypes.Structure):
    _fields_ = (
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    )


_libc: ctypes.CDLL | None = None


def _c() -> ctypes.CDLL:
    global _libc  # noqa: PLW0603  # loaded once, on first use (only the daemon drops)
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _prctl(option: int, arg: int, what: str) -> None:
    if _c().prctl(option, ctypes.c_ulong(arg), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise PrivilegeDropError(f"cannot {what}: {os.strerror(err)}")


def _single_thread(what: str) -> None:
    if threading.active_count() != 1:
        names = ", ".join(t.name for t in threading.enumerate() if t is not threading.main_thread())
        raise PrivilegeDropError(f"cannot {what} while other threads run ({names})")


def status_mask(field: str, status_file: str = "/proc/self/status") -> int:
    """A capability mask (`CapEff`, `CapPrm`, `CapBnd`) of this process (0 if unreadable)."""
    with open(status_file, encoding="ascii", errors="replace") as fh:
        for line in fh:
            if line.startswith(f"{field}:"):
                return int(line.split(":", 1)[1].strip(), 16)
    return 0


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return 40


def mask_of(caps: frozenset[int]) -> int:
    """The bit mask of capability numbers."""
    return sum(1 << c for c in caps)


def keep_only(caps: frozenset[int]) -> None:
    """Keep only `caps` (bounding, effective, permitted), nothing inheritable, no_new_privs."""
    _single_thread("drop capabilities")
    bounding = status_mask("CapBnd")
    for cap in range(_last_cap() + 1):
        if cap not in caps and bounding >> cap & 1:
            _prctl(PR_CAPBSET_DROP, cap, f"drop capability {cap} from the bounding set")
    _prctl_ambient_clear()
    keep = mask_of(caps) & status_mask("CapPrm")
    header = _CapHeader(_CAP_VERSION_3, 0)
    data = (_CapData * 2)(
        _CapData(keep & 0xFFFFFFFF, keep & 0xFFFFFFFF, 0),
        _CapData(keep >> 32, keep >> 32, 0),
    )
    if _c().capset(ctypes.byref(header), data) != 0:
        raise PrivilegeDropError(f"cannot set capabilities: {os.strerror(ctypes.get_errno())}")
    _prctl(PR_SET_NO_NEW_PRIVS, 1, "set no_new_privs")


def _prctl_ambient_clear() -> None:
    # EINVAL on kernels before 4.3 (no ambient set): nothing to clear there.
    failed = _c().prctl(PR_CAP_AMBIENT, ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL), 0, 0, 0)
    if failed and ctypes.get_errno() != errno.EINVAL:
        raise PrivilegeDropError("cannot clear the ambient capabilities")


def become(uid: int, gid: int) -> None:
    """Become `uid`:`gid` for good (real, effective and saved ids), no capabilities left."""
    if uid == 0:
        raise PrivilegeDropError("refusing to run the analyzer as uid 0")
    _single_thread("change user")
    try:
        os.setgroups([gid])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        raise PrivilegeDropError(f"cannot switch to uid {uid}: {exc.strerror}") from None
    _prctl(PR_SET_NO_NEW_PRIVS, 1, "set no_new_privs")
    if os.getuid() == 0 or os.geteuid() == 0 or status_mask("CapEff") or status_mask("CapPrm"):
        raise PrivilegeDropError("privileges are still held after switching user")


def die_with_parent(signal_number: int) -> None:
    """Have the kernel send `signal_number` to this process when its parent exits."""
    _prctl(PR_SET_PDEATHSIG, signal_number, "set the parent-death signal")
