"""Flow keys and endpoints cache their hash: equal keys must still hash equal, everywhere."""

from __future__ import annotations

import ipaddress
import pickle
import subprocess
import sys
from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from netwatch.model import Endpoint, FlowKey, Transport

ips = st.one_of(
    st.ip_addresses(v=4),
    st.ip_addresses(v=6),
    st.ip_addresses(v=4).map(lambda a: ipaddress.IPv6Address(f"::ffff:{a}")),
)
endpoints = st.builds(Endpoint, ips, st.integers(0, 65535))
keys = st.builds(FlowKey, st.sampled_from(list(Transport)), endpoints, st.none() | endpoints)


@given(keys, keys)
def test_equal_keys_hash_equal(a: FlowKey, b: FlowKey) -> None:
    rebuilt = FlowKey(a.transport, Endpoint(a.local.ip, a.local.port), a.remote)
    assert rebuilt == a and hash(rebuilt) == hash(a)
    if a == b:
        assert hash(a) == hash(b)
    assert len({a, b, rebuilt}) == (1 if a == b else 2)


def test_mapped_and_plain_ipv4_are_one_key() -> None:
    plain = Endpoint(ipaddress.ip_address("192.0.2.1"), 443)
    mapped = Endpoint(ipaddress.ip_address("::ffff:192.0.2.1"), 443)
    assert {plain: 1}[mapped] == 1
    key = FlowKey(Transport.TCP, plain, None)
    assert hash(replace(key, remote=mapped)) == hash(FlowKey(Transport.TCP, plain, plain))


def test_a_key_from_another_process_finds_its_twin() -> None:
    # str hashes are salted per process: a cached hash must not travel in a pickle.
    key = FlowKey(
        Transport.UDP,
        Endpoint(ipaddress.ip_address("198.51.100.7"), 1194),
        Endpoint(ipaddress.ip_address("2001:db8::1"), 51820),
    )
    code = (
        "import pickle, sys, ipaddress\n"
        "from netwatch.model import Endpoint, FlowKey, Transport\n"
        "k = pickle.loads(sys.stdin.buffer.read())\n"
        "twin = FlowKey(Transport.UDP, Endpoint(ipaddress.ip_address('198.51.100.7'), 1194),\n"
        "               Endpoint(ipaddress.ip_address('2001:db8::1'), 51820))\n"
        "print({twin: 'found'}.get(k, 'lost'))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code],
        input=pickle.dumps(key),
        capture_output=True,
        timeout=60,
        check=True,
        env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"},
    )
    assert res.stdout.decode().strip() == "found"
