"""The daemon's privilege split: fork the collector, then turn this process into the analyzer.

`netwatch daemon` started as root (docs/architecture.md, section 7):

1. `start_collector` forks before any thread exists. The child (`sources.collector`) keeps
   uid 0 but only `COLLECTOR_CAPS`, and serves socket tables, connection-start owners, host
   facts and the config file's text over a socketpair. This process waits for its first
   word (ready, or one line saying why not).
2. Still root, this process opens what it needs privileges for: the store, the dashboards'
   socket, the export file, and the capture socket (`open_capture`: the AF_PACKET socket and
   its ring are opened, not read yet; as tcpdump -Z does, privileges are checked when a
   socket is opened, so the unprivileged analyzer keeps using it).
3. `become_analyzer` switches to the `netwatch` system user for good, with no capabilities
   and `no_new_privs`; only then do threads start (capture reader, sinks, metrics, pruner).

This process stays the main process (systemd's MAINPID: sd_notify, watchdog, SIGHUP), and
the collector its child: the kernel signals the collector when its parent dies
(PR_SET_PDEATHSIG), and the socketpair reads end of stream, so neither outlives the other.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import pwd
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from netwatch import files
from netwatch.errors import CaptureUnavailableError
from netwatch.pipeline.capture_flows import CaptureFlows
from netwatch.pipeline.offline import default_inspector
from netwatch.sources.capture import LiveCapture
from netwatch.sources.channel import Channel
from netwatch.sources.collector import run_collector
from netwatch.sources.privdrop import become
from netwatch.sources.remote import ANSWER_TIMEOUT, CollectorLink

log = logging.getLogger("netwatch.daemon")

ANALYZER_USER = "netwatch"
"""The system user the analyzer runs as (README: Running as a service)."""
FALLBACK_USER = "nobody"
"""Used, with a warning, where the `netwatch` user was not created: the parsers must not run
as root even then, and `nobody` exists everywhere. It is shared with other daemons, which is
why the install creates `netwatch`."""
SO_LOCK_FILTER = 44
PRELOAD = ("encodings.ascii", "encodings.idna", "encodings.latin_1", "stringprep", "unicodedata")
"""Modules the analyzer would otherwise import after the drop (found by diffing `sys.modules`
over ticks, alerts, a metrics scrape and a SIGHUP). Imported while still root, so the
analyzer runs even where its user cannot read the interpreter's folder (an interpreter under
/root); any later import from such a folder fails with one line."""


@dataclass(frozen=True, slots=True)
class AnalyzerUser:
    """Whom the analyzer becomes."""

    name: str
    uid: int
    gid: int


def analyzer_user() -> AnalyzerUser:
    """The `netwatch` user (group `netwatch`), else `nobody` (group `netwatch` if it exists)."""
    group = files.group_id()
    try:
        pw = pwd.getpwnam(ANALYZER_USER)
    except KeyError:
        pw = pwd.getpwnam(FALLBACK_USER)
    return AnalyzerUser(pw.pw_name, pw.pw_uid, group if group is not None else pw.pw_gid)


def start_collector(
    config_file: Path | None, watch_starts: bool, socket_path: Path, containers: bool = True
) -> CollectorLink:
    """Fork the collector and return the link to it once it is ready (raises
    `ChannelClosedError`, one line, when it could not start)."""
    ours, pid = fork_child(
        lambda theirs: run_collector(theirs, config_file, watch_starts, socket_path, containers),
        socket.SOCK_STREAM,
        "collector",
    )
    link = CollectorLink(Channel(ours, timeout=ANSWER_TIMEOUT), pid)
    try:
        link.wait_ready()
    except BaseException:
        link.close()
        reap(pid)
        raise
    return link


def fork_child(
    run: Callable[[socket.socket], int], kind: socket.SocketKind, what: str
) -> tuple[socket.socket, int]:
    """Fork a child process that runs `run` on its end of a new socketpair of `kind` and
    exits with what `run` returns; return our end and the child's pid.

    The child never returns into the daemon's code: whatever happens it ends in `os._exit`,
    after the logs are flushed, and an exception is one log line naming `what`, not a
    traceback. Buffered output is flushed first so the child does not print it again.
    """
    ours, theirs = socket.socketpair(socket.AF_UNIX, kind)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            ours.close()
            code = run(theirs)
        except Exception as exc:
            log.error("%s stopped: %s", what, exc)
        finally:
            logging.shutdown()
            os._exit(code)
    theirs.close()
    return ours, pid


def reap(pid: int, timeout: float = 3.0) -> int | None:
    """Wait for the collector to exit (it does once the channel is closed); its status."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.02)


def open_capture(interface: str | None, link: CollectorLink) -> CaptureFlows | None:
    """The capture socket opened with this process's privileges, its reader not started
    (`CaptureFlows.capture.start()` after the drop); None when capture is unavailable.

    The filter is locked (SO_LOCK_FILTER), so the analyzer cannot widen what the socket
    takes. The socket could still send frames: that right stays with the analyzer (see
    docs/architecture.md, section 7).
    """
    try:
        capture = LiveCapture(interface).open()
    except CaptureUnavailableError as exc:
        log.info("packet capture off: %s", exc)
        return None
    with contextlib.suppress(OSError):  # kernels before 3.9: no lock, nothing else changes
        capture.packet_socket.setsockopt(socket.SOL_SOCKET, SO_LOCK_FILTER, 1)
    inspect, forget = default_inspector()
    own = frozenset((os.getpid(), link.pid)) if link.pid is not None else None
    return CaptureFlows(capture, inspect=inspect, forget=forget, starts=link.starts, own_pids=own)


def become_analyzer(user: AnalyzerUser, link: CollectorLink) -> None:
    """Switch this process to `user` for good (raises `PrivilegeDropError`, one line)."""
    for name in PRELOAD:
        importlib.import_module(name)
    become(user.uid, user.gid)
    if user.name != ANALYZER_USER:  # said only once the daemon runs: a start error is one line
        log.warning(
            "no %r system user: the analyzer runs as %r (README: Running as a service)",
            ANALYZER_USER,
            user.name,
        )
    log.info(
        "privileges split: collector pid %s (root, capture and /proc capabilities only), "
        "analyzer pid %s (user %s, no capabilities)",
        link.pid,
        os.getpid(),
        user.name,
    )
