"""The collector's socket table reaches the analyzer's side whole, then as changes only.

A real `SocketSampler` on this host serves a `RemoteSockets` over a real socketpair (the
collector in a thread here, a forked process in the daemon): the first answer is the full
table, an unchanged socket stays the very same entry object on the analyzer's side, and a
connection opened or closed between samples arrives as an upsert or a removal.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.model import (
    Direction,
    Endpoint,
    FlowKey,
    ProcessRef,
    SocketEntry,
    SocketTable,
    Transport,
)
from netwatch.sources.channel import Channel, ChannelClosedError, frame, unframe
from netwatch.sources.collector import Collector, TableDiff
from netwatch.sources.remote import CollectorLink, RemoteSockets


@pytest.fixture
def link() -> Iterator[tuple[CollectorLink, list[dict[str, object]]]]:
    ours, theirs = socket.socketpair()
    collector = Collector(Channel(theirs), config_file=None, watch_starts=False)
    answers: list[dict[str, object]] = []
    real_answer = collector.answer

    def answer(request: object) -> dict[str, object]:
        out = real_answer(request)
        answers.append(unframe(frame(out)))
        return out

    collector.answer = answer  # type: ignore[method-assign]  # records what went on the wire
    thread = threading.Thread(target=collector.serve, daemon=True)
    thread.start()
    link = CollectorLink(Channel(ours, timeout=10))
    yield link, answers
    link.close()
    thread.join(5)
    collector.close()


def _conversations(table: SocketTable, port: int) -> set[tuple[int, int | None]]:
    return {
        (e.key.local.port, e.key.remote.port if e.key.remote else None)
        for e in table.entries
        if e.key.transport is Transport.TCP
        and (e.key.local.port == port or (e.key.remote and e.key.remote.port == port))
    }


def test_full_table_then_only_changes(link: tuple[CollectorLink, list[dict[str, object]]]) -> None:
    remote, answers = link
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        first = remote.sockets.sample()
        assert answers[-1].get("full") is True
        assert _conversations(first, port) == {(port, None)}
        assert len(first.entries) == len(answers[-1]["upserts"])  # type: ignore[arg-type]

        second = remote.sockets.sample()
        unchanged = {e.inode: e for e in first.entries if e.inode}
        assert "full" not in answers[-1]
        same = [e for e in second.entries if e.inode in unchanged]
        assert same and all(unchanged[e.inode] is e for e in same if e.key.local.port == port)

        client = socket.create_connection(("127.0.0.1", port))
        accepted = server.accept()[0]
        third = remote.sockets.sample()
        ports = (client.getsockname()[1], port)
        assert _conversations(third, port) >= {(port, None), ports, ports[::-1]}
        upserted = answers[-1]["upserts"]
        assert 2 <= len(upserted) < len(third.entries)  # type: ignore[arg-type]
        owners = {e.process.pid for e in third.entries if e.process and e.key.local.port in ports}
        assert owners, "the sockets are named for this process through the channel"

        client.close()
        accepted.close()
        fourth = remote.sockets.sample()
        assert ports not in _conversations(fourth, port) or answers[-1].get("upserts")
        assert answers[-1].get("removed") or answers[-1].get("upserts")
    finally:
        server.close()


def test_entries_through_the_channel_keep_stamps_so_flows_are_reused(
    link: tuple[CollectorLink, list[dict[str, object]]],
) -> None:
    """An unchanged socket must reach the flow stage as a known entry (its stamp), or the
    analyzer rebuilds, enriches and judges every flow on every tick."""
    from netwatch.flows.socket_flows import SocketFlows

    remote, _ = link
    server = socket.create_server(("127.0.0.1", 0))
    try:
        first = remote.sockets.sample()
        assert first.entries and all(e.stamp for e in first.entries)
        flows = SocketFlows()
        flows.flows(first, 1.0)
        second = remote.sockets.sample()
        alive = {id(e) for e in first.entries}  # both tables hold their entries meanwhile
        kept = sum(id(e) in alive for e in second.entries)
        assert kept >= 1  # our listening socket did not change (others on a busy host may)
        flows.flows(second, 2.0)
        assert flows.reused == kept
    finally:
        server.close()


def _sock(inode: int, sent: int) -> SocketEntry:
    key = FlowKey(
        Transport.TCP,
        Endpoint(ipaddress.ip_address("127.0.0.1"), 20000 + inode % 30000),
        Endpoint(ipaddress.ip_address("127.0.0.1"), 443),
    )
    return SocketEntry(
        key=key, state="ESTABLISHED", direction=Direction.UNKNOWN, inode=inode, bytes_sent=sent
    )


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["same", "reread", "add", "drop", "timewait", "state", "owner"]),
            st.integers(0, 40),
        ),
        max_size=12,
    )
)
def test_table_messages_rebuild_every_table_on_the_other_side(
    steps: list[tuple[str, int]],
) -> None:
    """Whatever the sampler hands on (the same tuple, sockets re-read in place, sockets come
    and gone, inode-less TIME_WAIT rows), the analyzer's side holds exactly that table."""
    diff, remote = TableDiff(), RemoteSockets(None)  # type: ignore[arg-type]  # no link needed
    entries = tuple(_sock(i, 0) for i in range(1, 8))
    for op, n in [("start", 0), *steps]:
        if op == "reread" and entries:
            i = n % len(entries)
            e = entries[i]
            entries = (
                *entries[:i],
                replace(e, bytes_sent=(e.bytes_sent or 0) + 1),
                *entries[i + 1 :],
            )
        elif op in ("state", "owner") and entries:  # a fact of a socket changes in place
            i = n % len(entries)
            e = entries[i]
            changed = (
                replace(e, state="CLOSE_WAIT" if e.state != "CLOSE_WAIT" else "ESTABLISHED")
                if op == "state"
                else replace(e, process=_OWNERS[n % 2], bytes_sent=(e.bytes_sent or 0) + n % 2)
            )
            entries = (*entries[:i], changed, *entries[i + 1 :])
        elif op == "add":
            entries = (*entries, _sock(100 + n, 0))
        elif op == "drop" and entries:
            i = n % len(entries)
            entries = entries[:i] + entries[i + 1 :]
        elif op == "timewait":
            entries = (*entries, replace(_sock(200 + n, 0), inode=0, state="TIME_WAIT"))
        table = SocketTable(taken_at=float(len(entries)), entries=entries)
        message = unframe(frame(diff.message(table)))
        got = remote._decode(message)
        assert Counter(got.entries) == Counter(entries)  # every field (all but the stamp)
        assert all(e.stamp for e in got.entries)
        # Lookups through the indexes a re-read table shares with the table before it find
        # what a table indexed afresh finds (the very entry of this table, by position).
        fresh = SocketTable(taken_at=got.taken_at, entries=got.entries)
        for e in got.entries:
            k = e.key
            found = got.lookup(k.transport, k.local, k.remote)
            assert found is fresh.lookup(k.transport, k.local, k.remote)
            assert found is not None and found in got.entries


_OWNERS = (
    ProcessRef(pid=10, create_time=1.0, name="a", exe="/usr/bin/a", user="root"),
    ProcessRef(pid=11, create_time=2.0, name="b", exe="/usr/bin/b", user="root"),
)


def test_a_re_read_socket_whose_facts_held_goes_as_counters_and_decodes_to_the_same_entry() -> None:
    """Only the counters of a socket re-read in place cross the channel (a tick with 200
    active sockets among 20,000 sent each whole entry, key and all); the analyzer's entry is
    the one a whole upsert would give, with a new stamp, and its neighbours stay the very
    objects they were. A socket whose state or owner changed is still sent whole."""
    diff, remote = TableDiff(), RemoteSockets(None)  # type: ignore[arg-type]  # no link needed
    entries = [replace(_sock(i, 10 * i), process=_OWNERS[0]) for i in range(1, 6)]
    held = remote._decode(unframe(frame(diff.message(SocketTable(1.0, tuple(entries))))))

    entries[1] = replace(entries[1], bytes_sent=999, bytes_received=5, segs_out=7, segs_in=3)
    message = unframe(frame(diff.message(SocketTable(2.0, tuple(entries)))))
    assert "upserts" not in message and "procs" not in message
    assert message["counters"] == [[entries[1].inode, 999, 5, 7, 3]]
    got = remote._decode(message)
    assert got.entries == tuple(entries)
    assert got.entries[1].stamp and got.entries[1].stamp != held.entries[1].stamp
    assert all(got.entries[i] is held.entries[i] for i in (0, 2, 3, 4))

    entries[2] = replace(entries[2], state="CLOSE_WAIT", bytes_sent=1)
    entries[3] = replace(entries[3], process=_OWNERS[1])
    entries[4] = replace(entries[4], interface="eth0", segs_in=9)
    message = unframe(frame(diff.message(SocketTable(3.0, tuple(entries)))))
    assert "counters" not in message
    assert sorted(h for h, _ in message["upserts"]) == [e.inode for e in entries[2:]]
    assert remote._decode(message).entries == tuple(entries)


def test_counters_for_a_socket_never_sent_are_a_bad_table() -> None:
    """The collector's word is checked like any record: counters naming no held socket
    are refused (one line, the daemon exits), never applied to a guess."""
    remote = RemoteSockets(None)  # type: ignore[arg-type]  # no link needed
    with pytest.raises(ChannelClosedError, match="never sent"):
        remote._apply({"taken_at": 1.0, "counters": [[42, 1, 2, 3, 4]]})
    with pytest.raises(ChannelClosedError, match="5 fields"):
        remote._apply({"taken_at": 1.0, "counters": [[42, 1]]})


def test_a_refresh_with_nothing_to_read_again_does_not_wake_the_collector(
    link: tuple[CollectorLink, list[dict[str, object]]],
) -> None:
    """A quiet tick (capture saw no packets) re-reads nothing, so the analyzer answers from
    the table it holds, as the local sampler does, and the collector is not asked: neither
    process wakes for it. A tick with activity still asks."""
    remote, answers = link
    first = remote.sockets.sample()
    asked = len(answers)
    assert remote.sockets.refresh([]) is first
    assert remote.sockets.refresh(iter(())) is not None
    quiet = len(answers)
    assert quiet <= asked + 1  # an iterator cannot be told empty without asking
    server = socket.create_server(("127.0.0.1", 0))
    try:
        client = socket.create_connection(server.getsockname())
        ends = client.getsockname(), client.getpeername()
        conversation = (
            Transport.TCP,
            Endpoint(ipaddress.ip_address(ends[0][0]), ends[0][1]),
            Endpoint(ipaddress.ip_address(ends[1][0]), ends[1][1]),
        )
        remote.sockets.refresh([conversation])
        assert len(answers) == quiet + 1
        client.close()
    finally:
        server.close()


def test_a_table_of_re_read_counters_keeps_the_lookup_index_and_finds_the_new_entries() -> None:
    """Capture looks its flows up in every tick's table; a tick that only re-read counters
    carries last table's index over (rebuilding it hashed 20,000 keys in Python per tick),
    and a lookup then finds the re-read entry, not the one it replaced."""
    diff, remote = TableDiff(), RemoteSockets(None)  # type: ignore[arg-type]  # no link needed
    listener = SocketEntry(
        key=FlowKey(Transport.TCP, Endpoint(ipaddress.ip_address("0.0.0.0"), 443), None),
        state="LISTEN",
        direction=Direction.UNKNOWN,
        inode=7,
    )
    entries = [listener, *(_sock(i, 0) for i in range(1, 5))]
    first = remote._decode(unframe(frame(diff.message(SocketTable(1.0, tuple(entries))))))
    k = entries[2].key
    assert first.lookup(k.transport, k.local, k.remote) is first.entries[2]
    assert first.owner_pids() == frozenset()

    entries[2] = replace(entries[2], bytes_sent=50)
    entries[0] = replace(listener, segs_in=1)
    second = remote._decode(unframe(frame(diff.message(SocketTable(2.0, tuple(entries))))))
    assert second._by_pair is not None  # carried over, not rebuilt on the first lookup
    assert second.lookup(k.transport, k.local, k.remote) is second.entries[2]
    assert second.entries[2].bytes_sent == 50
    far = Endpoint(ipaddress.ip_address("10.0.0.9"), 5555)
    wildcard = second.lookup(Transport.TCP, Endpoint(ipaddress.ip_address("127.0.0.1"), 443), far)
    assert wildcard is second.entries[0] and wildcard.segs_in == 1
    rebuilt = SocketTable(2.0, second.entries)
    for e in second.entries:
        assert second.lookup(e.key.transport, e.key.local, e.key.remote) is rebuilt.lookup(
            e.key.transport, e.key.local, e.key.remote
        )


def test_a_changed_socket_without_an_inode_keeps_its_first_seen() -> None:
    """Sockets without an inode (TIME_WAIT rows) are matched to their last flow by key, a
    lookup now made only when such a socket changed; one with an inode by its inode."""
    from netwatch.flows.socket_flows import SocketFlows

    timewait = replace(_sock(3, 0), inode=None, state="TIME_WAIT", stamp=1)
    live = replace(_sock(4, 0), stamp=2)
    flows = SocketFlows()
    first = flows.flows(SocketTable(1.0, (timewait, live)), 1.0)
    later = (replace(timewait, segs_in=2, stamp=3), replace(live, bytes_sent=9, stamp=4))
    second = flows.flows(SocketTable(2.0, later), 2.0)
    assert [f.first_seen for f in first] == [1.0, 1.0]
    assert [f.first_seen for f in second] == [1.0, 1.0]
    assert [f.serial for f in second] == [f.serial for f in first]


def test_containers_homes_cross_when_they_change_and_hold_between() -> None:
    """Each container's own addresses (`SocketTable.homes`) go over the channel when they
    change, like conntrack's translations; between changes the analyzer keeps the last."""
    ours, theirs = socket.socketpair()
    collector = Collector(Channel(theirs), config_file=None, watch_starts=False)
    remote = RemoteSockets(None)  # type: ignore[arg-type]  # no link needed
    try:
        entries = tuple(_sock(i, 0) for i in range(1, 4))
        home = ((4026532999, (ipaddress.ip_address("172.17.0.2"),)),)
        sent = []
        for at, homes in ((1.0, home), (2.0, home), (3.0, ())):
            message = unframe(frame(collector._table(SocketTable(at, entries, homes=homes))))
            sent.append("homes" in message)
            assert remote._decode(message).homes == homes
        assert sent == [True, False, True]
    finally:
        collector.close()
        ours.close()


def test_a_refresh_patched_in_place_is_diffed_from_the_samplers_word_as_by_comparing() -> None:
    """The collector tells its diff where a patched refresh changed entries (the sampler
    knows); a diff that compares every pair must send the very same message."""
    ours, theirs = socket.socketpair()
    collector = Collector(Channel(theirs), config_file=None, watch_starts=False)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    server = listener.accept()[0]
    plain = TableDiff()
    try:
        collector.answer({"op": "sample"})
        assert collector.sampler._last is not None and collector.sampler._last.made is not None
        plain.message(collector.sampler._last.made)
        cport = client.getsockname()[1]
        active = [["tcp", "127.0.0.1", port, "127.0.0.1", cport]]  # both ends, server first
        active.append(["tcp", "127.0.0.1", cport, "127.0.0.1", port])
        for n in (1, 2):
            client.sendall(b"x" * 500 * n)
            server.recv(4096)
            server.sendall(b"y")
            client.recv(16)
            got = collector.answer({"op": "refresh", "active": active})
            table = collector.sampler._last.made
            assert table is not None and collector.sampler.patched(table) is not None
            want = plain.message(table)
            assert len(want.get("counters", ())) == 2 and {k: got[k] for k in want} == want
    finally:
        for s in (client, server, listener, ours, theirs):
            s.close()
        collector.close()


def test_the_samplers_word_about_another_table_is_not_taken() -> None:
    """A hint patched from entries other than those last sent says nothing about this diff."""
    a = tuple(_sock(i, 0) for i in range(1, 6))
    b = tuple(_sock(i, 1) if i == 2 else e for i, e in enumerate(a, 1))
    c = tuple(_sock(i, 2) if i in (2, 4) else e for i, e in enumerate(b, 1))
    hinted, plain = TableDiff(), TableDiff()
    for diff in (hinted, plain):
        diff.message(SocketTable(taken_at=1.0, entries=a))
    wrong = (b, [3])  # patched from b, which was never sent
    got = hinted.message(SocketTable(taken_at=2.0, entries=c), wrong)
    assert got == plain.message(SocketTable(taken_at=2.0, entries=c))
    assert len(got["counters"]) == 2
