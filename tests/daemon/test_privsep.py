"""The daemon's privilege split, read from the kernel's own view of each process.

As root, `netwatch daemon` is two processes: the analyzer (the process started, the one
systemd watches) runs as the `netwatch` system user with no capability and no_new_privs; the
collector (its child) keeps uid 0 and exactly the capabilities `COLLECTOR_CAPS` names. Each is
checked in `/proc/<pid>/status`, not by asking netwatch. Then: a loopback connection is still
named for its process through the split, the death of either half ends the other, and
`--no-privsep` keeps one process.
"""

from __future__ import annotations

import grp
import os
import pwd
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from netwatch.model import Attribution, Transport
from netwatch.sources.collector import COLLECTOR_CAPS
from tests.conftest import requires_root
from tests.daemon.harness import REPO, Collector, daemon_argv, make_programs, stop
from tests.daemon.test_daemon_local import _wait_for
from tests.netns import Lab

pytestmark = [pytest.mark.daemon, pytest.mark.timeout(120), requires_root]

# Listens on 127.0.0.1 (port printed), accepts one connection and holds it; bounded at 60 s.
SERVER = r"""
import socket, sys, time
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(4)
print(s.getsockname()[1], flush=True)
c = s.accept()[0]
time.sleep(60)
"""
# Connects to 127.0.0.1:argv[1] and holds the connection; bounded at 60 s.
CLIENT = r"""
import socket, sys, time
c = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
time.sleep(60)
"""


@pytest.fixture(scope="module")
def netwatch_user() -> Iterator[pwd.struct_passwd]:
    """The `netwatch` group and system user, created as README's install line does if
    missing, and removed again afterwards if this test made them (the test run must not
    leave the machine with a user and group it did not ask for)."""
    made_group = subprocess.run(["getent", "group", "netwatch"], capture_output=True).returncode
    subprocess.run(["groupadd", "-f", "--system", "netwatch"], check=True, timeout=30)
    made_user = False
    try:
        pwd.getpwnam("netwatch")
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--gid", "netwatch", "--no-create-home",
             "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "netwatch"],
            check=True, timeout=30,
        )  # fmt: skip
        made_user = True
    try:
        yield pwd.getpwnam("netwatch")
    finally:
        if made_user:
            subprocess.run(["userdel", "netwatch"], check=False, timeout=30)
        if made_group:
            subprocess.run(["groupdel", "netwatch"], check=False, timeout=30)


def _status(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        return dict(line.rstrip("\n").split(":\t", 1) for line in fh if ":\t" in line)


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdecimal():
            try:
                if _status(int(entry)).get("PPid") == str(pid):
                    out.append(int(entry))
            except OSError:
                continue
    return out


@pytest.fixture
def daemon(tmp_path: Path, netwatch_user: pwd.struct_passwd) -> Iterator[subprocess.Popen[bytes]]:
    """The real daemon as root (capture on), until its socket exists."""
    sock = tmp_path / "n.sock"
    proc = subprocess.Popen(
        daemon_argv(tmp_path / "n.db", sock, "--interval", "0.3"),
        cwd=REPO,
        stderr=subprocess.PIPE,
    )
    try:
        assert _wait_for(sock.exists, 30), "the daemon did not start"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stderr is not None
        proc.stderr.close()


def _collector_of(proc: subprocess.Popen[bytes]) -> int:
    kids: list[int] = []
    assert _wait_for(lambda: bool(kids.extend(_children(proc.pid)) or kids), 10)
    assert len(kids) == 1, f"expected one collector, found {kids}"
    return kids[0]


def test_analyzer_has_no_privileges_and_collector_only_its_named_ones(
    daemon: subprocess.Popen[bytes], netwatch_user: pwd.struct_passwd
) -> None:
    analyzer = _status(daemon.pid)
    uids = analyzer["Uid"].split()
    assert uids == [str(netwatch_user.pw_uid)] * 4, analyzer["Uid"]
    assert analyzer["Gid"].split()[0] == str(grp.getgrnam("netwatch").gr_gid)
    assert analyzer["CapEff"] == "0000000000000000"
    assert analyzer["CapPrm"] == "0000000000000000"
    assert analyzer["NoNewPrivs"] == "1"

    collector = _status(_collector_of(daemon))
    named = f"{sum(1 << c for c in COLLECTOR_CAPS):016x}"
    assert collector["Uid"].split() == ["0"] * 4
    assert collector["CapEff"] == named
    assert collector["CapPrm"] == named
    assert collector["CapBnd"] == named
    assert collector["CapInh"] == "0000000000000000"
    assert collector["NoNewPrivs"] == "1"


def test_sigterm_stops_both(daemon: subprocess.Popen[bytes]) -> None:
    collector = _collector_of(daemon)
    assert stop(daemon, signal.SIGTERM, timeout=10) < 10
    assert daemon.returncode == 0
    assert not Path(f"/proc/{collector}").exists()


def test_collector_death_ends_the_daemon_non_zero(daemon: subprocess.Popen[bytes]) -> None:
    os.kill(_collector_of(daemon), signal.SIGKILL)
    assert daemon.wait(10) != 0
    assert daemon.stderr is not None
    err = daemon.stderr.read().decode()
    assert "collector is gone" in err, err
    assert "Traceback" not in err


def test_analyzer_death_ends_the_collector(daemon: subprocess.Popen[bytes]) -> None:
    collector = _collector_of(daemon)
    daemon.kill()
    daemon.wait(10)
    assert _wait_for(lambda: not Path(f"/proc/{collector}").exists(), 10)


def test_a_loopback_connection_is_named_through_the_split(
    tmp_path: Path, daemon: subprocess.Popen[bytes]
) -> None:
    server_prog, client_prog = make_programs(tmp_path / "bin", 2, prefix="nwpsep")
    env = dict(os.environ, PYTHONHOME=sys.base_prefix)
    server = subprocess.Popen(
        [str(server_prog), "-c", SERVER], stdout=subprocess.PIPE, env=env, text=True
    )
    client = None
    feed = Collector(tmp_path / "n.sock")
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        client = subprocess.Popen([str(client_prog), "-c", CLIENT, str(port)], env=env)

        def named(c: Collector) -> bool:
            for snap in c.snapshots[-3:]:
                for ef in snap.flows:
                    f = ef.flow
                    if (
                        f.process is not None
                        and f.process.name == client_prog.name
                        and f.process.pid == client.pid  # type: ignore[union-attr]
                        and f.key.remote is not None
                        and f.key.remote.port == port
                    ):
                        return True
            return False

        assert feed.wait_for(named, 20), "the client's connection was not named for its process"
        status = feed.snapshots[-1].status
        assert status.privileged, "the collector's view (it sees every process) is reported"
    finally:
        feed.close()
        for p in (client, server):
            if p is not None:
                p.kill()
                p.wait(5)


# Sends IP protocol 253 (RFC 3692) to 127.0.0.1 over a raw socket, five a second; bounded
# at 20 s.
RAW_SENDER = r"""
import socket, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 253)
for i in range(100):
    s.sendto(b"netwatch privsep raw %d" % i, ("127.0.0.1", 0))
    time.sleep(0.2)
"""


def test_a_raw_socket_sender_is_named_through_the_split(
    tmp_path: Path, daemon: subprocess.Popen[bytes]
) -> None:
    """The collector lists raw sockets with their protocol (`/proc/net/raw`); the analyzer
    pairs the protocol-253 flow capture sees with the one raw socket of that protocol
    (`flows.raw_pairing`, a guess)."""
    (prog,) = make_programs(tmp_path / "bin", 1, prefix="nwrawsep")
    env = dict(os.environ, PYTHONHOME=sys.base_prefix)
    sender = subprocess.Popen([str(prog), "-c", RAW_SENDER], env=env)
    feed = Collector(tmp_path / "n.sock")
    try:

        def named(c: Collector) -> bool:
            for snap in c.snapshots[-3:]:
                for ef in snap.flows:
                    f = ef.flow
                    if (
                        f.key.transport is Transport.OTHER
                        and f.process is not None
                        and f.process.pid == sender.pid
                        and f.attribution is Attribution.GUESSED
                    ):
                        return True
            return False

        ok = feed.wait_for(named, 20)
        seen = {
            (str(ef.flow.key.local), str(ef.flow.key.remote), ef.flow.attribution.value)
            for snap in feed.snapshots
            for ef in snap.flows
            if ef.flow.key.transport is Transport.OTHER
        }
        assert ok, f"the raw sender's flow was not named for its process: {seen}"
    finally:
        feed.close()
        sender.kill()
        sender.wait(5)


def test_the_collector_names_short_lived_processes_from_process_events(
    tmp_path: Path, daemon: subprocess.Popen[bytes]
) -> None:
    # The connector needs CAP_NET_ADMIN, which the collector keeps; the cgroup socket hooks
    # are loaded before the collector gives up CAP_SYS_ADMIN (it keeps their fds only): the
    # status says the best of the two is in use, and only the watcher's threads run at its
    # raised priority.
    from netwatch.sources.cgroup_bpf import CgroupHooks, HooksUnavailableError
    from netwatch.sources.connect_owners import MECHANISM_EVENTS, MECHANISM_HOOKS, WATCHER_NICE

    try:
        CgroupHooks().open().close()
        expected = MECHANISM_HOOKS
    except HooksUnavailableError:
        expected = MECHANISM_EVENTS
    feed = Collector(tmp_path / "n.sock")
    try:
        assert feed.wait_for(lambda c: bool(c.snapshots), 20)
        assert feed.snapshots[-1].status.starts == expected
    finally:
        feed.close()
    collector = _collector_of(daemon)
    if expected == MECHANISM_HOOKS:  # the collector holds a BPF link (its fdinfo says so)
        links = []
        for fd in os.listdir(f"/proc/{collector}/fdinfo"):
            with open(f"/proc/{collector}/fdinfo/{fd}") as fh:
                links += [line for line in fh if line.startswith("link_type:")]
        assert any("cgroup" in line for line in links), links
    nice = {}
    for tid in os.listdir(f"/proc/{collector}/task"):
        with open(f"/proc/{collector}/task/{tid}/stat", "rb") as fh:
            stat = fh.read()
        nice[int(tid)] = int(stat[stat.rfind(b")") + 2 :].split()[16])
    assert nice.pop(collector) == 0, nice  # the main thread (the sampler) got its own back
    # The start watcher's and the process-events reader's threads (Python 3.11 does not
    # name threads for the kernel: they are told apart from the main thread only).
    assert list(nice.values()).count(WATCHER_NICE) >= 2, nice


def test_no_privsep_keeps_one_root_process(tmp_path: Path) -> None:
    sock = tmp_path / "n.sock"
    proc = subprocess.Popen(
        daemon_argv(tmp_path / "n.db", sock, "--interval", "0.3", "--no-privsep"), cwd=REPO
    )
    try:
        assert _wait_for(sock.exists, 30)
        assert _children(proc.pid) == []
        assert _status(proc.pid)["Uid"].split()[0] == "0"
        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sock))  # it serves
    finally:
        stop(proc)


# Holds a loopback connection inside a container's namespace; bounded at 60 s.
CONTAINED = r"""
import socket, time
srv = socket.socket(); srv.bind(("127.0.0.1", 9402)); srv.listen()
c = socket.create_connection(("127.0.0.1", 9402)); a, _ = srv.accept()
print("ready", flush=True)
time.sleep(60)
"""


def test_a_container_s_connection_is_named_through_the_split(
    tmp_path: Path, daemon: subprocess.Popen[bytes]
) -> None:
    """The collector keeps no CAP_SYS_ADMIN, so it lists the container's namespace from
    `/proc/<pid>/net`; the flow still has its program and its namespace."""
    (program,) = make_programs(tmp_path / "bin", 1, prefix="nwpctr")
    env = dict(os.environ, PYTHONHOME=sys.base_prefix)
    feed = Collector(tmp_path / "n.sock")
    with Lab("psep") as lab:
        ns = lab.add_ns("c")
        lab.exec_ok(ns, ["ip", "link", "set", "lo", "up"])
        holder = lab.spawn(
            ns,
            ["unshare", "--pid", "--fork", "--mount-proc", str(program), "-c", CONTAINED],
            stdout=subprocess.PIPE,
            env=env,
            bufsize=0,
        )
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"ready"
        netns = os.stat(f"/run/netns/{ns}").st_ino

        def named(c: Collector) -> bool:
            return any(
                ef.flow.process is not None
                and ef.flow.process.name == program.name
                and ef.flow.container is not None
                and ef.flow.container.netns == netns
                and ef.flow.container.name == ns
                and ef.flow.key.remote is not None
                for snap in c.snapshots[-3:]
                for ef in snap.flows
            )

        try:
            assert feed.wait_for(named, 20), "the container's connection was not named"
        finally:
            feed.close()
