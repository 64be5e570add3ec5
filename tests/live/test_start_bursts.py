"""Short-lived processes, fast connections and a flood: who opened each connection (issue 13).

Each scenario runs in a lab (`tests/starts_lab.py`: a host namespace and a peer with sinks at
a documentation address) with distinctly named programs, and asks the start watcher (with
process events, as the daemon's collector runs it) who opened each connection the programs
report. Timing matters here: a 2-core machine running the suite's background load
(tests/busy.py) or other work starves the watcher's thread now and then. So each row asserts
the acceptance figure only when the suite runs with `--idle` (the load absent), and a
documented tolerance otherwise. The flood row's connections each stay open 50 ms, so what it
tests (a flood must not blind the watcher) depends little on the machine's speed: all 20 with
the load absent, at least 18 with it (the code before the fair shares named 11 of 20 here,
with or without load).
"""

from __future__ import annotations

import ipaddress
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netwatch.model import Endpoint, FlowKey, Transport
from netwatch.sources.cgroup_bpf import CgroupHooks, HooksUnavailableError
from netwatch.sources.connect_owners import MECHANISM_EVENTS, MECHANISM_HOOKS
from tests.conftest import requires_root, requires_tools
from tests.live.capture_lab import Watch, process_name, remote_is
from tests.netns import HOST_IP
from tests.starts_lab import StartsLab, start_watcher

pytestmark = [pytest.mark.live, requires_root, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartsLab]:
    with StartsLab.open(tmp_path_factory.mktemp("starts")) as sl:
        yield sl


@pytest.fixture
def idle(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--idle"))


def _hooks_load() -> bool:
    try:
        CgroupHooks().open().close()
    except HooksUnavailableError:
        return False
    return True


@pytest.fixture(params=[MECHANISM_HOOKS, MECHANISM_EVENTS])
def mechanism(request: pytest.FixtureRequest) -> str:
    """Each row runs with the cgroup socket hooks (the best mechanism) and with process
    events + the start watcher (the fallback where the hooks cannot load)."""
    if request.param == MECHANISM_HOOKS and not _hooks_load():
        pytest.skip("the cgroup socket hooks cannot load here")
    return str(request.param)


def _named(lab: StartsLab, scenario: str, mechanism: str) -> tuple[int, int, str]:
    owners = start_watcher(lab.lab, events=True, hooks=mechanism == MECHANISM_HOOKS)
    try:
        time.sleep(0.2)
        ports, name = getattr(lab, scenario)(), {
            "sequence": "seqsend", "one_process": "manyconn", "burst": "burstproc",
            "flood_and_connect": "quietconn",
        }[scenario]  # fmt: skip
        named = lab.named(owners, ports, name)
        return named, len(ports), owners.stats().mechanism
    finally:
        owners.stop()


def test_twenty_short_lived_processes_in_sequence_are_named(
    lab: StartsLab, idle: bool, mechanism: str
) -> None:
    named, made, active = _named(lab, "sequence", mechanism)
    assert made == 20 and active == mechanism
    if mechanism == MECHANISM_HOOKS:
        # The target: the right program for at least 95% of the scenario's bytes
        # (each process sends the same 256 KiB, so 19 of 20). The kernel names each connect
        # as it happens, so load does not change this.
        assert named >= 19, f"{named}/{made} named"
        return
    # A floor against collapse, not the target (19 of 20), for the fallback
    # mechanism: on the quiet 2-core machine 12-18 of 20 were named from run to run
    # (2026-12-02), and 7 under CI's load; the rest close within a millisecond, leaving a
    # TIME_WAIT entry with no inode to look up. The hooks above are what meets the target.
    assert named >= (10 if idle else 5), f"{named}/{made} named"


def test_sixty_fast_connections_from_one_process_are_named(
    lab: StartsLab, idle: bool, mechanism: str
) -> None:
    # Each exchange takes well under a millisecond on the veth: some sockets are gone before
    # any user-space watcher can ask for them; the process is known from the first one.
    named, made, _ = _named(lab, "one_process", mechanism)
    assert made == 60
    if mechanism == MECHANISM_HOOKS:
        assert named >= 57, f"{named}/{made} named"  # 95% of the (equal) connections' bytes
        return
    # A floor against collapse of the fast path (the process known from its first
    # connection), not the target: 17-44 of 60 were named from run to run on the
    # quiet machine and 29 under the suite's load (2026-12-02, the same with the start
    # watcher's own branch).
    assert named >= (15 if idle else 12), f"{named}/{made} named"


def test_thirty_processes_at_once_are_named(lab: StartsLab, idle: bool, mechanism: str) -> None:
    named, made, _ = _named(lab, "burst", mechanism)
    assert made == 30
    if mechanism == MECHANISM_HOOKS:
        assert named >= 28, f"{named}/{made} named"  # the acceptance figure, load or not
        return
    # The acceptance figure (28 of 30) holds on a quiet 2-core machine; under the suite's
    # load 30 interpreters starting at once take the cores from the watcher for a while.
    assert named >= (28 if idle else 18), f"{named}/{made} named"


def test_a_dns_flood_does_not_hide_another_programs_connections(
    lab: StartsLab, idle: bool, mechanism: str
) -> None:
    # With the hooks, the flood still goes to the DNS packet socket (and its budget), while
    # the TCP connections are named from the hooks' ring by a thread of their own.
    owners = start_watcher(lab.lab, events=True, hooks=mechanism == MECHANISM_HOOKS)
    assert owners._thread is not None and owners._thread.ident is not None
    clock = time.pthread_getcpuclockid(owners._thread.ident)
    try:
        time.sleep(0.2)
        cpu0, wall0 = time.clock_gettime(clock), time.monotonic()
        ports = lab.flood_and_connect()
        cpu, wall = time.clock_gettime(clock) - cpu0, time.monotonic() - wall0
        named = lab.named(owners, ports, "quietconn")
        stats = owners.stats()
    finally:
        owners.stop()
    assert len(ports) == 20
    # The flood cost the watcher no more than its cap (5% of a core, plus one batch's worth).
    assert cpu <= owners.cap * wall + 0.01, f"{cpu:.3f} s CPU in {wall:.2f} s"
    floor = 20 if idle or mechanism == MECHANISM_HOOKS else 18
    assert named >= floor, f"{named}/20 named during the flood ({stats})"
    # The flood was seen and refused for what it is, not silently dropped.
    assert stats.missed_budget + stats.missed_queue > 1000, stats
    assert stats.missed == stats.missed_budget + stats.missed_gone + stats.missed_queue


def test_process_events_remember_a_program_that_has_already_exited(tmp_path: Path) -> None:
    from netwatch.sources.proc_events import ProcessEvents

    program = tmp_path / "blinkexit"  # a copy of the interpreter: its own name
    shutil.copy2(sys.executable, program)
    events = ProcessEvents().start()
    try:
        time.sleep(0.1)
        ran = subprocess.Popen([str(program), "-c", "import time; time.sleep(0.3)"])
        time.sleep(0.15)
        assert ran.pid in events.fresh(), "a live new process is listed as new"
        ran.wait(10)
        time.sleep(0.1)
        ref = events.remembered(ran.pid, None)  # gone from /proc: named from its exec
    finally:
        events.stop()
    assert ref is not None and ref.name == "blinkexit" and ref.exe == str(program)
    assert ran.pid not in events.fresh()  # ended: no fds left to search


def _nft_bytes(lab: StartsLab) -> int:
    out = lab.lab.run(lab.peer.ns, ["nft", "list", "table", "inet", "nwstarts"]).stdout
    found = re.search(r"counter packets \d+ bytes (\d+)", out)
    assert found is not None, out
    return int(found.group(1))


@requires_tools("nft", "tcpdump")
@pytest.mark.parametrize(
    ("scenario", "program"), [("sequence", "seqsend"), ("one_process", "manyconn")]
)
def test_the_live_engine_gives_the_program_its_bytes_with_the_hooks(
    lab: StartsLab, tmp_path: Path, scenario: str, program: str
) -> None:
    """The issue's acceptance on netwatch's own live path (engine, capture, hooks): the right
    program for at least 95% of the scenario's bytes, and those bytes within 10% of an
    nftables counter in the peer (the reference, not netwatch)."""
    if not _hooks_load():
        pytest.skip("the cgroup socket hooks cannot load here")
    peer = lab.peer.ns
    if "nwstarts" not in lab.lab.run(peer, ["nft", "list", "tables"]).stdout:
        for rule in (
            ["add", "table", "inet", "nwstarts"],
            ["add", "chain", "inet", "nwstarts", "in", "{ type filter hook input priority 0; }"],
            ["add", "rule", "inet", "nwstarts", "in", "tcp", "dport", "8080", "counter"],
        ):
            lab.lab.exec_ok(peer, ["nft", *rule])
    before = _nft_bytes(lab)
    watch = Watch(lab.lab, tmp_path, bpf=f"host {lab.peer.ip}", interval=0.5).start()
    try:
        ports = set(getattr(lab, scenario)())
        time.sleep(1.5)  # a tick or two for the last flows
    finally:
        watch.stop()
    reference = _nft_bytes(lab) - before
    assert {s["status"].get("starts") for s in watch.snapshots} == {MECHANISM_HOOKS}
    latest: dict[tuple[str, int], dict] = {}  # each conversation's last record
    for flow in watch.flows(remote_is(lab.peer.ip, 8080)):
        local = (
            (flow["src"], flow["sport"]) if flow["dport"] == 8080 else (flow["dst"], flow["dport"])
        )
        latest[local] = flow
    ours = {k: f for k, f in latest.items() if k[1] in ports}
    assert len(ours) == len(ports), f"{len(ours)} of {len(ports)} connections seen"
    moved = sum(f["bytes_sent"] for f in ours.values())
    named = sum(f["bytes_sent"] for f in ours.values() if process_name(f) == program)
    names = sorted({str(process_name(f)) for f in ours.values()})
    assert named >= 0.95 * moved, f"{named} of {moved} bytes named {program} ({names})"
    assert abs(moved - reference) <= 0.1 * reference, (moved, reference)


QUERY = r"""
import socket, sys, time
q = bytes.fromhex("123401000001000000000000076578616d706c6503636f6d0000010001")
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.connect((sys.argv[1], 53)); c.send(q)  # as a resolver does: connect, then send
print(c.getsockname()[1], flush=True)
time.sleep(0.05)  # the sink never answers: the resolver's wait, cut short
"""


def test_dns_queries_of_short_lived_processes_are_named(
    lab: StartsLab, tmp_path: Path, mechanism: str
) -> None:
    """With the hooks, a query's socket is named from the owner map by its cookie (no /proc
    search); without, by the start watcher's search. Both name all 20."""
    owners = start_watcher(lab.lab, events=True, hooks=mechanism == MECHANISM_HOOKS)
    script = tmp_path / "query.py"
    script.write_text(QUERY)
    try:
        time.sleep(0.2)
        ports = []
        for _ in range(20):
            res = lab.lab.run(
                lab.lab.host, [str(lab.program("dnsask")), str(script), lab.peer.ip], timeout=30
            )
            assert res.returncode == 0, res.stderr
            ports.append(int(res.stdout))
        time.sleep(0.3)
        named = 0
        for port in ports:
            key = FlowKey(
                Transport.UDP,
                Endpoint(ipaddress.ip_address(HOST_IP), port),
                Endpoint(ipaddress.ip_address(lab.peer.ip), 53),
            )
            ref = owners.owner(key)
            named += ref is not None and ref.name == "dnsask"
        hooked = owners.udp_hooked
    finally:
        owners.stop()
    assert (hooked >= 20) if mechanism == MECHANISM_HOOKS else (hooked == 0), hooked
    assert named == 20, f"{named}/20 named"
