"""Files and folders netwatch writes, created with an explicit mode whatever the umask.

What netwatch writes says who talked to whom: process names, command lines, users, remote
addresses. A file created with the process umask is world-readable under the common 022 (and
everything is under 000), so every writer goes through here: files are 0600, or 0640 owned
by root and the `netwatch` group when root writes a file that group may read (the daemon's
store and export), and folders netwatch creates are 0700 (0750 for that group). An existing
file is tightened to the same mode when it is opened for writing. Imports nothing from the
rest of netwatch.
"""

from __future__ import annotations

import errno
import grp
import os
from pathlib import Path
from typing import IO, Any, BinaryIO, Literal, TextIO, overload

GROUP = "netwatch"
"""Members may attach a dashboard to the daemon and read what it stores and exports."""


def group_id() -> int | None:
    """The `netwatch` group's id, or None where the group does not exist."""
    try:
        return grp.getgrnam(GROUP).gr_gid
    except KeyError:
        return None


def _for_group(shared: bool) -> int | None:
    """The group to share with: only when asked and the group exists, and either root can
    hand it over or this process runs as that group (the daemon's analyzer)."""
    if not shared:
        return None
    gid = group_id()
    if gid is None or (os.geteuid() != 0 and os.getegid() != gid):
        return None
    return gid


def make_dirs(path: Path, shared: bool = False) -> None:
    """Create `path` and missing parents as 0700 (0750 root:netwatch when `shared`).

    Folders that exist are left as they are: they may be the user's or systemd's.
    """
    gid = _for_group(shared)
    mode = 0o750 if gid is not None else 0o700
    missing: list[Path] = []
    for folder in (path, *path.parents):
        if folder.exists():
            break
        missing.append(folder)
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=mode)
        except FileExistsError:
            continue
        os.chmod(folder, mode)
        if gid is not None and os.geteuid() == 0:
            os.chown(folder, 0, gid)


def create_fd(path: Path, flags: int, shared: bool = False) -> int:
    """Open `path` with `os.open` flags, creating it 0600 (0640 root:netwatch when `shared`).

    The mode is set with fchmod after the open, so neither the umask nor an older, looser
    file decides it. A symlink in the last place is refused (ELOOP, an `OSError` the callers
    report as one line): the daemon runs as root, and a link planted where its export file
    goes would otherwise have it chmod and append to whatever file the link names.
    """
    gid = _for_group(shared)
    mode = 0o640 if gid is not None else 0o600
    fd = os.open(path, flags | os.O_CLOEXEC | os.O_NOFOLLOW, mode)
    try:
        if os.geteuid() == 0 and os.fstat(fd).st_nlink > 1:
            # A hard link planted in a folder another user may write (the daemon's export
            # folder, which its unprivileged analyzer owns) would otherwise have root
            # chmod and chown the file it points at.
            raise OSError(errno.EMLINK, f"{path} has more than one hard link; refusing it")
        os.fchmod(fd, mode)
        if gid is not None and os.geteuid() == 0:
            os.fchown(fd, 0, gid)
    except PermissionError:
        pass  # another user's file that we may write to: its owner chose its mode
    except BaseException:
        os.close(fd)
        raise
    return fd


def ensure_file(path: Path, shared: bool = False) -> None:
    """Create `path` empty with the private mode if it does not exist (for SQLite files)."""
    os.close(create_fd(path, os.O_WRONLY | os.O_CREAT, shared))


@overload
def open_private(
    path: Path, mode: Literal["w", "a"] = "w", shared: bool = False, **kwargs: Any
) -> TextIO: ...
@overload
def open_private(
    path: Path, mode: Literal["wb", "ab"], shared: bool = False, **kwargs: Any
) -> BinaryIO: ...
def open_private(path: Path, mode: str = "w", shared: bool = False, **kwargs: Any) -> IO[Any]:
    """`open()` for writing (`w`, `a`, `wb`, `ab`) with the private mode; kwargs go to fdopen."""
    flags = os.O_WRONLY | os.O_CREAT
    flags |= os.O_APPEND if mode.startswith("a") else os.O_TRUNC
    fd = create_fd(path, flags, shared)
    try:
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise
