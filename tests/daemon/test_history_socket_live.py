"""A real daemon (as root: split, the analyzer unprivileged) answers history over its socket
to a user who may attach but may not read its store file.

The store holds three hours of known usage (`tests/history_store.py`) before the daemon
starts. The client runs as `nobody` (uid and group 65534), with the socket given to its
group as the `netwatch` group would be: it cannot open the store (`history --db` fails with
one line), and `history --attach SOCKET` prints the same rows root reads from the file. The
window ends before the daemon started, so what the daemon itself records meanwhile (this
host's own traffic) is not in it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netwatch.daemon.client import DaemonHistory
from netwatch.daemon.server import socket_answers
from netwatch.model.usage import UsageQuery
from netwatch.store.rollup import HOUR, SPAN
from tests.conftest import requires_root
from tests.daemon.harness import REPO, daemon_argv, stop
from tests.history_store import write_recent_store

pytestmark = [pytest.mark.daemon, requires_root, pytest.mark.timeout(120)]

NOBODY = 65534


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _history(*args: str, user: int | None = None) -> tuple[int, str, str]:
    """`netwatch history ARGS`: (exit code, stdout, stderr); as `user` when given.

    As another user it runs in a fork of this process that gives up root first (as the
    daemon's analyzer does): the interpreter lives under /root, which `nobody` may not
    read, so it cannot be started as `nobody`; the command is run once as root first (output
    dropped), so that what it imports lazily is loaded before the fork.
    """
    import contextlib
    import io

    from netwatch.cli import main

    if user is None:
        res = subprocess.run(
            [sys.executable, "-m", "netwatch", "history", *args],
            capture_output=True, text=True, timeout=60, cwd=REPO, check=False,
        )  # fmt: skip
        return res.returncode, res.stdout, res.stderr
    # The same command as root first, output dropped: everything it imports is then loaded.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        main(["history", *args])
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115  # pytest replaced them
            sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
            os.setgroups([])
            os.setresgid(user, user, user)
            os.setresuid(user, user, user)
            code = main(["history", *args])
            sys.stdout.flush()
            sys.stderr.flush()
        except BaseException as exc:  # noqa: BLE001  # reported to the parent, not raised
            os.write(2, f"child failed: {type(exc).__name__}: {exc}\n".encode())
        finally:
            os._exit(code)
    os.close(out_w)
    os.close(err_w)
    with os.fdopen(out_r) as out, os.fdopen(err_r) as err:
        stdout, stderr = out.read(), err.read()
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), stdout, stderr


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A folder `nobody` may pass through to reach the socket (pytest's are root's, 0700)."""
    folder = Path(tempfile.mkdtemp(prefix="nwhist-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_a_user_who_cannot_read_the_store_gets_history_over_the_socket(
    tmp_path: Path, run_dir: Path
) -> None:
    db, sock = tmp_path / "n.db", run_dir / "n.sock"
    end = int(time.time()) // SPAN * SPAN
    totals = write_recent_store(db, end)
    window = ("--since", _iso(end - 3 * HOUR), "--until", _iso(end))
    daemon = subprocess.Popen(
        daemon_argv(db, sock, "--no-containers", "--no-capture", "--interval", "0.5"),
        cwd=REPO, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (sock.exists() and socket_answers(sock)):
            assert daemon.poll() is None, daemon.stderr.read() if daemon.stderr else ""
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.1)
        os.chown(sock, 0, NOBODY)  # the socket's group, as `netwatch` is for its members
        code, _, refused = _history("--db", str(db), *window, user=NOBODY)
        assert code != 0
        assert refused.count("\n") == 1 and "Traceback" not in refused, (code, refused)
        code, asked, problem = _history(
            "--attach", str(sock), *window, "--format", "jsonl", user=NOBODY
        )
        assert code == 0, problem
        # Query time over the socket (this test, as root, on the same daemon).
        source = DaemonHistory(sock, None)
        q = UsageQuery(since=end - 3 * HOUR, until=end, by="remote")
        started = time.monotonic()
        answer = source.usage(q)
        took = time.monotonic() - started
        source.close()
    finally:
        stop(daemon, signal.SIGTERM, timeout=15)
    assert daemon.returncode == 0
    code, from_file, problem = _history("--db", str(db), *window, "--format", "jsonl")
    assert code == 0, problem
    assert asked == from_file  # the same rows, line for line
    rows = [line for line in asked.splitlines() if line]
    assert len(rows) == len(totals)
    for name, total in totals.items():
        assert f'"process_name": "{name}"' in asked
        assert any(f'"bytes": {total},' in line for line in rows if f'"{name}"' in line)
    print(f"\nhistory over the socket: {len(answer.totals)} remotes from a store of "
          f"{3 * 60 * 6} minute rows at most in {took * 1000:.1f} ms")  # fmt: skip
