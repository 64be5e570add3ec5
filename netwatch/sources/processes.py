"""Socket inode -> owning process, cached across samples; process details through psutil.

Linux names a socket's owner only indirectly: each process's /proc/<pid>/fd holds links
`socket:[<inode>]`. Reading every link of every process is what makes `ss -p` slow, so
`SocketOwners` keeps inode -> pid between samples and touches /proc only when a socket it
has not seen appears or a cached owner exited:

1. new file descriptors only: a process whose fd count (the size of its fd folder, Linux
   6.2+) is unchanged and that closed no socket is skipped; others are listed and only
   links with new names, or names whose socket closed (a reused number), are read;
2. if an inode is still unknown and still open one sample later (a closed fd number was
   reused), read every link once more; waiting a sample spares that full read for the
   many short-lived sockets that are gone before they could be looked up;
3. what is still unknown belongs to processes we may not inspect (other users, without
   privileges) and is remembered as unknown until that socket closes, so it does not cause
   a rescan every sample.

Each cached owner is re-checked every sample by its /proc/<pid>/stat start time and name: a
reused pid or an exec refreshes the `ProcessRef`. Processes that vanish or deny access while
being read are skipped; they never fail the sample.
"""

from __future__ import annotations

import contextlib
import os
import pwd
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from typing import Protocol, TypeVar

import psutil

from netwatch.model import ProcessRef

_T = TypeVar("_T")


class ProcessReader(Protocol):
    """The psutil seam: details of one live process, or None if it vanished or is hidden."""

    def read(self, pid: int) -> ProcessRef | None:
        """Return the process's details, or None."""
        ...


class PsutilReader:
    """Reads name, exe, cmdline, user, ppid and create time with psutil in one pass."""

    def __init__(self) -> None:
        self._users: dict[int, str | None] = {}

    def read(self, pid: int) -> ProcessRef | None:
        """Return the process's details; fields it may not read are left empty."""
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                name = proc.name()
                create_time = proc.create_time()
                ppid = proc.ppid()
                uid = proc.uids().real
                exe = _optional(proc.exe)
                cmdline = _optional(proc.cmdline)
        except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
            return None
        return ProcessRef(
            pid=pid,
            create_time=create_time,
            name=name,
            exe=exe or None,
            cmdline=tuple(cmdline or ()),
            user=self._user(uid),
            ppid=ppid,
        )

    def _user(self, uid: int) -> str | None:
        return user_name(uid, self._users)


def user_name(uid: int, names: dict[int, str | None]) -> str | None:
    """The user name of `uid` (its number when no user has it), kept in `names`: both process
    readers name every process's owner, and the password database is slow to ask."""
    if uid not in names:
        try:
            names[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            names[uid] = str(uid)
    return names[uid]


def _optional(getter: Callable[[], _T]) -> _T | None:
    try:
        return getter()
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _link_inodes(fd_dir: str, names: Iterable[str]) -> Iterator[tuple[str, int | None]]:
    """(name, inode of `socket:[N]`, or None for other files) for the fd links `names`.

    The fd folder is opened once and each link read relative to it, so the kernel resolves
    one name per link rather than the whole /proc path: a quarter less time per link,
    which is most of a cold sample's /proc scan. Yields nothing if the process is gone.
    """
    try:
        folder = os.open(fd_dir, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        for name in names:
            try:
                target = os.readlink(name, dir_fd=folder)
            except OSError:
                yield name, None
                continue
            inode = None
            if target.startswith("socket:["):
                with contextlib.suppress(ValueError):
                    inode = int(target[8:-1])
            yield name, inode
    finally:
        os.close(folder)


def _recheck(inode: int | None, wanted: set[int], missing: set[int]) -> bool:
    """Whether an fd whose last known link was `inode` (None: never read) must be re-read."""
    return inode is None or (inode != 0 and (inode not in wanted or inode in missing))


class SocketOwners:
    """inode -> `ProcessRef`, kept between samples (see the module docstring)."""

    def __init__(self, proc_root: str = "/proc", reader: ProcessReader | None = None) -> None:
        self._root = proc_root
        self._reader: ProcessReader = reader or PsutilReader()
        self._owner: dict[int, int] = {}
        """inode -> pid, for sockets seen in the last sample."""
        self._unknown: set[int] = set()
        """Inodes no readable process holds (other users' sockets, orphaned TIME_WAIT)."""
        self._pending: set[int] = set()
        """Inodes the last scan could not place without reading every link; next scan will."""
        self._fds: dict[int, dict[str, int]] = {}
        """pid -> fd name -> the inet socket inode it linked to (0: anything else)."""
        self._counts: dict[int, int] = {}
        """pid -> how many fds it had when last listed."""
        self._holders: dict[int, set[int]] = {}
        """inode -> pids whose fds were seen linking to it (shared sockets)."""
        self._lost: set[int] = set()
        """pids that closed an inet socket since the last scan: their fd numbers may be reused."""
        self._procs: dict[int, tuple[bytes, ProcessRef]] = {}
        """pid -> (stat identity, details); the identity catches pid reuse and exec."""
        self._wanted: set[int] = set()
        self._out: dict[int, ProcessRef] = {}
        self._complete = False
        """Whether every inode of `_wanted` was owned or known unknown after the last call
        (none was left to look up): then an unchanged set with unchanged processes needs no
        set arithmetic to know that `_out` still holds."""
        self.version = 0
        """Bumped whenever the inode -> process map changes."""
        self._denied: set[int] = set()
        self.denied = 0
        """How many processes hid their fds in the last scan (other users, no privileges)."""
        self.scans = 0
        """How many /proc scans ran: stays flat while nothing changes (tests, bench)."""

    def owners(self, inodes: Collection[int]) -> Mapping[int, ProcessRef]:
        """Map every inode of this sample that a readable process holds to that process.

        Returns the same mapping object, and leaves `version` alone, while nothing changed,
        so the sampler can skip per-socket owner checks.
        """
        wanted = set(inodes)
        wanted.discard(0)
        return self._answer(wanted, wanted == self._wanted)

    def owners_again(self) -> Mapping[int, ProcessRef]:
        """`owners()` of the very inodes of the last call, for a caller that knows its set
        of sockets did not change (the sampler's refresh that re-read sockets in place).

        The owning processes are re-checked as `owners()` does (that is per process, not
        per socket); what is skipped is hashing every inode again, twice, which at 20,000
        sockets cost a refresh of a few sockets more than the re-reading itself.
        """
        return self._answer(self._wanted, True)

    def _answer(self, wanted: set[int], same: bool) -> Mapping[int, ProcessRef]:
        changed = self._forget(wanted, same)
        if same and not changed and self._complete:
            return self._out  # every inode was placed last time, and nothing moved since
        missing = wanted.difference(self._owner, self._unknown)
        self._complete = not missing
        if missing:
            self._scan(missing, wanted)
            changed = True
        if same and not changed:
            return self._out
        out: dict[int, ProcessRef] = {}
        for inode in wanted:
            pid = self._owner.get(inode)
            if pid is None:
                continue
            entry = self._procs.get(pid)
            if entry is not None:
                out[inode] = entry[1]
        if out != self._out:
            self.version += 1
        self._out = out
        self._wanted = wanted
        return out

    def _forget(self, wanted: set[int], same: bool) -> bool:
        """Drop closed sockets, and owners that exited, were replaced (pid reuse) or exec'd.

        Returns whether anything was dropped or refreshed.
        """
        changed = False
        if not same:
            self._unknown &= wanted
            self._pending &= wanted
            for inode in [i for i in self._owner if i not in wanted]:
                self._lost.add(self._owner.pop(inode))
            for inode in [i for i in self._holders if i not in wanted]:
                self._lost |= self._holders.pop(inode)
            owners = set(self._owner.values())
            for pid in [p for p in self._procs if p not in owners]:
                del self._procs[pid]
        for pid in list(self._procs):
            entry = self._procs[pid]
            ident = self._identity(pid)
            if ident == entry[0]:
                continue
            changed = True
            ref = self._reader.read(pid) if ident is not None else None
            if ident is None or ref is None or entry[1].create_time != ref.create_time:
                # Gone, hidden, or a new process got the pid: the sockets are not its.
                self._drop(pid)
            else:
                self._procs[pid] = (ident, ref)  # same process after exec: new name
        return changed

    def _drop(self, pid: int) -> None:
        """Forget a process and its sockets; they are looked up again if still open."""
        self._procs.pop(pid, None)
        self._fds.pop(pid, None)
        for inode in [i for i, p in self._owner.items() if p == pid]:
            del self._owner[inode]

    def _identity(self, pid: int) -> bytes | None:
        return stat_identity(self._root, pid)

    def _scan(self, missing: set[int], wanted: set[int]) -> None:
        self.scans += 1
        try:
            pids = list_pids(self._root)
        except OSError:
            return
        live = set(pids)
        for pid in [p for p in self._fds if p not in live]:
            del self._fds[pid]
            self._counts.pop(pid, None)
        me = os.getpid() if self._root == "/proc" else -1
        # Processes that hold a socket we look for (shared with an owner that went away).
        suspects: set[int] = set()
        for inode in missing:
            suspects |= self._holders.get(inode, set())
        partial: list[int] = []
        denied = 0
        found: dict[int, int] = {}
        for pid in pids:
            before = self._fds.get(pid)
            if before is not None and pid != me and pid not in self._lost | suspects:
                count = self._fd_count(pid)
                if count is not None and count == self._counts.get(pid):
                    partial.append(pid)  # same number of fds, none of its sockets closed
                    continue
            names = self._list_fds(pid)
            if names is None:
                denied += pid in self._denied
                continue
            self._counts[pid] = len(names)
            if before is None or pid == me:
                # Our own listing holds our own passing fds (this listdir): never trust it.
                self._fds[pid] = self._read_links(pid, names, {}, wanted, found)
                continue
            # New fd numbers, numbers whose inet socket has closed since (so they were
            # reused), and numbers known to hold a socket we are looking for (its owner
            # exited or lost the pid, and this process shares the socket): read them again.
            todo = [n for n in names if _recheck(before.get(n), wanted, missing)]
            now = self._read_links(pid, todo, before, wanted, found)
            self._fds[pid] = {n: now[n] for n in names if n in now}
            partial.append(pid)
        self.denied = denied
        self._lost.clear()
        unresolved = missing.difference(found)
        # Still unknown: a socket closed since the dump (often, on a busy machine), another
        # user's, or one on an fd number that last held a file, pipe or unix socket. Only the
        # last needs every link read again; that is done once the socket survived a sample.
        if partial and unresolved & self._pending:
            for pid in partial:
                names = self._list_fds(pid)
                if names is not None:
                    self._counts[pid] = len(names)
                    self._fds[pid] = self._read_links(pid, names, {}, wanted, found)
            unresolved = missing.difference(found)
            self._unknown |= unresolved & self._pending
        elif not partial:
            self._unknown |= unresolved  # every link was read: nobody we can see holds them
        self._pending = unresolved.difference(self._unknown)
        for inode, pid in found.items():
            if pid not in self._procs:
                ident = self._identity(pid)
                ref = self._reader.read(pid) if ident is not None else None
                if ident is None or ref is None:
                    continue  # vanished or denied between listing and reading: skip it
                self._procs[pid] = (ident, ref)
            self._owner[inode] = pid
            self._unknown.discard(inode)
            self._pending.discard(inode)

    def _fd_count(self, pid: int) -> int | None:
        """How many fds `pid` has, without listing them (Linux 6.2+: the fd folder's size)."""
        try:
            size = os.stat(f"{self._root}/{pid}/fd").st_size
        except OSError:
            return None
        return size or None  # 0: an older kernel that does not count

    def _list_fds(self, pid: int) -> list[str] | None:
        """The fd names of `pid`, or None if it exited or hides them (other users)."""
        try:
            names = os.listdir(f"{self._root}/{pid}/fd")
        except PermissionError:
            self._denied.add(pid)
            return None
        except OSError:
            return None  # exited meanwhile
        self._denied.discard(pid)
        return names

    def _read_links(
        self,
        pid: int,
        names: Collection[str],
        known: dict[str, int],
        wanted: set[int],
        found: dict[int, int],
    ) -> dict[str, int]:
        """Read the links `names` of `pid`; return `known` updated with what they hold."""
        out = dict(known)
        for name, inode in _link_inodes(f"{self._root}/{pid}/fd", names):
            if inode is not None and inode in wanted:
                # Lowest pid wins for shared sockets (a server's parent before its workers).
                found.setdefault(inode, pid)
                out[name] = inode
                self._holders.setdefault(inode, set()).add(pid)
            else:
                out[name] = 0
        return out


def stat_identity(proc_root: str, pid: int) -> bytes | None:
    """Name and start time from /proc/<pid>/stat: changes on pid reuse and on exec."""
    try:
        with open(f"{proc_root}/{pid}/stat", "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    close = data.rfind(b")")
    fields = data[close + 2 :].split()
    if close < 0 or len(fields) < 20:
        return None
    return data[: close + 1] + b" " + fields[19]


def list_pids(proc_root: str = "/proc") -> list[int]:
    """Every pid with a folder in `proc_root`, lowest first (raises OSError)."""
    return sorted(int(n) for n in os.listdir(proc_root) if n.isdecimal())


def find_holders(
    inodes: Collection[int], pids: Iterable[int], proc_root: str = "/proc"
) -> dict[int, int]:
    """inode -> the first pid (in `pids` order) whose fds link to it, for the inodes asked.

    Reads the fd links of one process after another and stops once every inode is placed,
    so a good guess of the order (who connected recently) makes it a handful of reads.
    Processes that exit or hide their fds are skipped.
    """
    left = set(inodes)
    found: dict[int, int] = {}
    for pid in pids:
        if not left:
            break
        base = f"{proc_root}/{pid}/fd"
        try:
            names = os.listdir(base)
        except OSError:
            continue
        for _, inode in _link_inodes(base, names):
            if inode is not None and inode in left:
                found[inode] = pid
                left.discard(inode)
    return found
