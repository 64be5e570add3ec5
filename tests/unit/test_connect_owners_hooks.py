"""The cgroup hooks' records through the start watcher's owner path (`ConnectionOwners`):
the flow key they name, the process read from /proc, and the kernel's name for a process
that is already gone. Records are built as the kernel program writes them and decoded."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

from netwatch.model import Endpoint, FlowKey, Transport
from netwatch.sources import cgroup_bpf_records as r
from netwatch.sources.connect_owners import MECHANISM_HOOKS, ConnectionOwners


def _record(pid: int, comm: str, family: int = r.AF_INET) -> r.ConnectRecord:
    six = family == r.AF_INET6
    data = r.RECORD.pack(
        (pid << 32) | pid,
        r.KIND_TCP_CONNECT,
        family,
        40001,
        int.from_bytes(b"\0\0\x01\xbb", "little"),
        ipaddress.IPv4Address("192.0.2.1").packed,
        ipaddress.IPv4Address("198.51.100.7").packed,
        ipaddress.IPv6Address("2001:db8::1" if six else "::").packed,
        ipaddress.IPv6Address("2001:db8::2" if six else "::").packed,
        7,
        comm.encode(),
    )
    rec = r.decode(data)
    assert rec is not None
    return rec


def _key(local: str, remote: str) -> FlowKey:
    return FlowKey(
        Transport.TCP,
        Endpoint(ipaddress.ip_address(local), 40001),
        Endpoint(ipaddress.ip_address(remote), 443),
    )


def test_a_record_names_its_flow_with_the_process_read_from_proc() -> None:
    owners = ConnectionOwners()
    owners._take_record(_record(os.getpid(), "python"))
    ref = owners.owner(_key("192.0.2.1", "198.51.100.7"))
    assert ref is not None and ref.pid == os.getpid() and ref.create_time > 0
    assert owners.drain() == [(_key("192.0.2.1", "198.51.100.7"), ref)]
    owners._take_record(_record(os.getpid(), "python", r.AF_INET6))
    assert owners.owner(_key("2001:db8::1", "2001:db8::2")) == ref
    stats = owners.stats()
    assert (stats.seen, stats.attributed, stats.missed) == (2, 2, 0)


def test_a_process_already_gone_is_named_by_the_kernel_s_name() -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    owners = ConnectionOwners()
    owners._take_record(_record(int(gone.stdout), "seqsend"))
    ref = owners.owner(_key("192.0.2.1", "198.51.100.7"))
    assert ref is not None and (ref.pid, ref.name) == (int(gone.stdout), "seqsend")


def test_the_mechanism_is_the_hooks_only_when_they_are_loaded() -> None:
    assert ConnectionOwners().mechanism != MECHANISM_HOOKS
