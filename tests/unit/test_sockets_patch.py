"""A refresh patched in place makes what the full path would make from the same records.

`SocketSampler._patched` builds a refresh's entries from last sample's in time of the
sockets re-read; `_table_from` walks every record. Two samplers see the same kernel records
(made up here: the kernel is outside) and the same fake /proc (`FakeProc`: the OS is
outside, the owner cache is real): one takes each refresh as the sampler does (the patch,
or the full path when the patch does not apply), the other always the full path. Their
entries, which entries are last sample's very objects, the record cache, the packet cache
and the hidden-socket count must agree, refresh after refresh.
"""

from __future__ import annotations

import os
import socket
import struct
import tempfile
from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.model import Container, SocketEntry, Transport
from netwatch.sources import netlink, procnet
from netwatch.sources.sockets import Batch, SocketSampler, _Reread
from tests.unit.test_sockets_owners import FakeProc

ME = os.geteuid()
OTHER = ME + 1
PIDS = (100, 200)
N_TCP = 12


def record(n: int, inode: int, sent: int, uid: int, transport: Transport) -> netlink.Record:
    """A diag record for connection `n` (its ports name it), with counters for TCP."""
    ident = netlink.make_ident(10_000 + n, 80, bytes([127, 0, 0, 1]), bytes([10, 0, 0, 9]), n + 1)
    counters = struct.pack("=QQII", sent, sent // 2, sent // 100, sent // 200)
    if transport is not Transport.TCP:
        counters = b""
    return (socket.AF_INET, 1, ident, uid, inode, counters)


class World:
    """The records and /proc both samplers see, changed step by step."""

    def __init__(self, root: Path) -> None:
        self.proc = FakeProc(root)
        (root / "self").mkdir()
        (root / "self" / "status").write_text("CapEff:\t0000000000000000\n")
        # Sockets 0-7 belong to two processes; 8-11 to nobody readable, half another user's.
        self.proc.spawn(100, "curl", 1, {3 + n: 5000 + n for n in range(0, 4)})
        self.proc.spawn(200, "sshd", 2, {3 + n: 5000 + n for n in range(4, 8)})
        self.tcp = [
            record(n, 5000 + n, 100 * n, OTHER if n >= 10 else ME, Transport.TCP)
            for n in range(N_TCP)
        ]
        self.udp = [record(50, 5050, 0, ME, Transport.UDP)]
        self.raw = [record(60, 5060, 0, OTHER, Transport.RAW)]
        self.contained = [record(70, 5070, 7, ME, Transport.TCP)]
        self.packets = [procnet.PacketRow(3, 0, ME, 5080)]

    def batches(self) -> list[Batch]:
        return [
            (Transport.TCP, list(self.tcp), None),
            (Transport.UDP, list(self.udp), None),
            (Transport.RAW, list(self.raw), None),
            (Transport.ICMP, [], None),
            (Transport.TCP, list(self.contained), Container(netns=4026531999, name="web")),
        ]

    def sampler(self) -> SocketSampler:
        return SocketSampler(
            backend="psutil", proc_root=str(self.proc.root), reader=self.proc, namespaces=False
        )


Step = tuple[dict[int, int], bool, bool, bool, bool, bool]
"""(TCP socket -> bytes sent now, one of them a new socket on the 4-tuple (curl's), one of
them chown'ed, a process exec'd, the raw table changed, a packet socket came)."""

steps = st.tuples(
    st.dictionaries(st.integers(0, N_TCP - 1), st.integers(0, 10**6), min_size=1, max_size=5),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)


def apply(world: World, step: Step, n_step: int) -> dict[tuple[int, int], netlink.Record]:
    """Change `world` as `step` says; the re-read TCP records, as `_reread` reports them."""
    sent, replaced, chowned, execd, raw, packet = step
    changed = {}
    for n, count in sent.items():
        old = world.tcp[n]
        inode, uid = old[4], old[3]
        if replaced and n == min(sent):
            inode += 1000 * (n_step + 1)
            world.proc.open_fd(100, 100 + n_step, inode)
        if chowned and n == max(sent):
            uid = ME if uid != ME else OTHER  # fchown on a socket changes its uid
        new = (old[0], old[1], old[2], uid, inode, record(n, inode, count, 0, Transport.TCP)[5])
        if new != old:
            world.tcp[n] = changed[(0, n)] = new
    if execd:
        world.proc.set_stat(100, f"curl{n_step}", 1)
        world.proc.details[100] = replace(world.proc.details[100], name=f"curl{n_step}")
    if raw:
        world.raw = [*world.raw, record(61 + n_step, 6000 + n_step, 0, OTHER, Transport.RAW)]
    if packet:
        world.packets = [*world.packets, procnet.PacketRow(0x800, n_step + 1, OTHER, 7000 + n_step)]
    return changed


def refreshed(
    sampler: SocketSampler, world: World, changed: dict[tuple[int, int], netlink.Record]
) -> list[SocketEntry]:
    """What `refresh` does with records re-read in place: the patch, else the full path."""
    last = sampler._last
    assert last is not None
    batches, rows = world.batches(), list(world.packets)
    if not changed:
        return last.entries
    entries, patch = sampler._rebuilt(last, batches, rows, _Reread(batches, changed, True))
    if patch is not None:  # what the table diff is told: exactly the entries made anew
        assert patch.entries is entries
        assert patch.positions == [i for i, e in enumerate(entries) if e is not last.entries[i]]
        # every patched entry is its old entry's socket, in its place: the table's lookup
        # indexes (positions) are shared by the re-read table as they are
        assert all(entries[i].key == last.entries[i].key for i in patch.positions)
    return entries


def assert_same(
    patched: SocketSampler,
    full: SocketSampler,
    got: list[SocketEntry],
    want: list[SocketEntry],
    before: tuple[list[SocketEntry], list[SocketEntry]],
) -> None:
    assert got == want  # by value (a stamp is not compared)
    ids = ({id(e) for e in before[0]}, {id(e) for e in before[1]})
    kept_got = [id(e) in ids[0] for e in got]
    kept_want = [id(e) in ids[1] for e in want]
    assert kept_got == kept_want  # the same sockets handed on as last sample's very entries
    fresh = [e.stamp for e, kept in zip(got, kept_got, strict=True) if not kept]
    newest = max(e.stamp for e in before[0])
    assert len(set(fresh)) == len(fresh) and all(s > newest for s in fresh)
    assert patched._seen.keys() == full._seen.keys()
    for where, seen in patched._seen.items():
        assert seen == full._seen[where]
    assert patched._packet_seen == full._packet_seen
    assert patched._hidden == full._hidden
    assert patched.status() == full.status()


@settings(max_examples=60, deadline=None)
@given(st.lists(steps, min_size=1, max_size=4))
def test_a_patched_refresh_makes_what_the_full_path_makes(plan: list[Step]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        world = World(Path(tmp))
        patched, full = world.sampler(), world.sampler()
        got = patched._table_from(world.batches(), list(world.packets))
        want = full._table_from(world.batches(), list(world.packets))
        assert got == want
        for n_step, step in enumerate(plan):
            before = (got, want)
            changed = apply(world, step, n_step)
            got = refreshed(patched, world, changed)
            want = full._table_from(world.batches(), list(world.packets)) if changed else want
            assert_same(patched, full, got, want, before)
        # The caches the patches left: a full pass then keeps the same entries either way.
        again = patched._table_from(world.batches(), list(world.packets))
        again_full = full._table_from(world.batches(), list(world.packets))
        assert_same(patched, full, again, again_full, (got, want))


def test_the_patch_applies_to_counters_and_steps_aside_for_anything_else(
    tmp_path: Path,
) -> None:
    """The property above holds either way; this checks the patch is the path taken when
    only counters moved, and not when the owners or the raw table changed."""
    world = World(tmp_path)
    sampler = world.sampler()
    sampler._table_from(world.batches(), list(world.packets))

    def rebuilt(step: Step, n: int) -> tuple[list[SocketEntry], object]:
        changed = apply(world, step, n)
        assert sampler._last is not None
        batches = world.batches()
        read = _Reread(batches, changed, True)
        return sampler._rebuilt(sampler._last, batches, list(world.packets), read)

    entries, patch = rebuilt(({1: 7777}, False, False, False, False, False), 0)
    assert patch is not None and entries[1].bytes_sent == 7777
    assert entries[1].process is not None and entries[1].process.name == "curl"
    assert rebuilt(({2: 8888}, False, False, False, True, False), 1)[1] is None  # raw table
    entries, patch = rebuilt(({3: 9999}, False, False, True, False, False), 2)  # exec
    assert patch is None and entries[0].process is not None
    assert entries[0].process.name == "curl2"
    assert rebuilt(({4: 1}, True, False, False, False, False), 3)[1] is None  # new socket
    assert rebuilt(({5: 2}, False, False, False, False, False), 4)[1] is not None


def test_a_full_sample_of_the_same_sockets_keeps_the_position_map(tmp_path: Path) -> None:
    """Between full samples of connections that all stayed (counters moved), the map of
    where each TCP socket is carries over; a socket gone, come or moved rebuilds it."""
    world = World(tmp_path)
    sampler = world.sampler()

    def sample() -> dict[object, tuple[int, int]]:
        sampler._table_from(world.batches(), list(world.packets))
        assert sampler._last is not None
        return sampler._last.tcp_positions()

    first = sample()
    apply(world, ({1: 5, 7: 9}, False, False, False, True, False), 0)  # counters, a packet socket
    assert sample() is first
    fresh: dict[object, tuple[int, int]] = {}
    for b, (transport, records, ns) in enumerate(world.batches()):
        if transport is Transport.TCP and ns is None:
            assert sampler._last is not None
            for i in range(len(records)):
                fresh[sampler._last.entries[sampler._last.starts[b] + i].key] = (b, i)
    assert first == fresh
    world.tcp = [world.tcp[1], world.tcp[0], *world.tcp[2:]]  # two swap places
    second = sample()
    assert second is not first and second != first
    world.tcp = world.tcp[:-1]  # one closed
    assert sample() is not second
