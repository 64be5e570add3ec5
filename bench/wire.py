"""Bytes on the wire per tick, and the time to encode and decode them: the daemon's stream.

Builds 1,000 and 10,000 numbered flows (200 processes, 500 remotes, as on a busy server) and
measures, for the schema-1 format (one whole snapshot per tick, what the daemon sent before
the delta protocol) and the delta protocol (`netwatch.stream`):
  state        - the first record a client gets (schema 1: every tick is one)
  quiet tick   - nothing changed
  100 changed  - 50 flows moved bytes (`rev_traffic`), 50 changed a fact (`rev_facts`)
  1 % new      - 1 % of the flows replaced by new conversations
with the bytes of the framed record, the encode time (ms, the daemon's side, median) and the
decode time (ms, the dashboard's side: `StreamDecoder.apply` + `snapshot`). Prints a table;
never asserts (tests/unit/test_stream.py holds the size targets).

    python bench/wire.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netwatch import codec  # noqa: E402
from netwatch.model import (  # noqa: E402
    Attribution,
    Direction,
    Endpoint,
    EnrichedFlow,
    Flow,
    FlowKey,
    ProcessRef,
    RemoteInfo,
    Scope,
    Snapshot,
    Transport,
    parse_ip,
)
from netwatch.stream import StreamDecoder, StreamEncoder  # noqa: E402

T0 = 1_700_000_000.0


def population(n: int, first_serial: int = 1) -> list[EnrichedFlow]:
    procs = [
        ProcessRef(
            pid=3000 + i,
            create_time=T0,
            name=f"worker{i}",
            exe=f"/usr/bin/worker{i}",
            cmdline=(f"/usr/bin/worker{i}", "--serve", "--threads=8"),
            user="www-data",
            ppid=1,
        )
        for i in range(200)
    ]
    remotes = [
        RemoteInfo(
            ip=parse_ip(f"198.51.{i // 250}.{i % 250 + 1}"),
            scope=Scope.GLOBAL,
            country="DE",
            asn=64500 + i,
            as_org=f"Example Hosting {i}",
        )
        for i in range(500)
    ]
    out = []
    for j in range(n):
        i = first_serial + j
        remote = remotes[i % 500]
        flow = Flow(
            key=FlowKey(
                Transport.TCP,
                Endpoint(parse_ip("192.0.2.10"), 1024 + i % 60000),
                Endpoint(remote.ip, 443),
            ),
            direction=Direction.OUTBOUND,
            state="ESTABLISHED",
            process=procs[i % 200],
            attribution=Attribution.SOCKET,
            first_seen=T0,
            last_seen=T0 + 1,
            bytes_sent=1000 + i,
            bytes_received=50_000 + i,
            sni=f"host{i % 500}.example",
            serial=i,
            rev_facts=1,
            rev_traffic=1,
        )
        out.append(EnrichedFlow(flow, remote, rev_remote=1))
    return out


def busier(ef: EnrichedFlow) -> EnrichedFlow:
    f = ef.flow
    return replace(
        ef,
        flow=replace(
            f,
            bytes_sent=(f.bytes_sent or 0) + 1500,
            last_seen=(f.last_seen or T0) + 1,
            rev_traffic=f.rev_traffic + 1,
        ),
    )


def renamed(ef: EnrichedFlow) -> EnrichedFlow:
    f = ef.flow
    return replace(ef, flow=replace(f, state="CLOSE_WAIT", rev_facts=f.rev_facts + 1))


def median_ms(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def measure(n: int, repeat: int) -> list[tuple[str, int, int, float, float]]:
    flows = population(n)
    changed = list(flows)
    for k, i in enumerate(range(0, n, n // 100)):
        changed[i] = busier(changed[i]) if k % 2 else renamed(changed[i])
    fresh = population(n // 100, first_serial=n + 1)
    replaced = flows[n // 100 :] + fresh
    ticks = [
        ("quiet tick", flows),
        ("100 changed", changed),
        ("1 % new", replaced),
    ]
    rows = []
    first = Snapshot(seq=1, taken_at=T0, interval=1.0, flows=tuple(flows))
    old = codec.dumps(first).encode() + b"\n"
    enc = StreamEncoder()
    state = codec.frame(enc.encode(first))
    parsed = codec.parse(state)
    rows.append(
        (
            "state (first record)",
            len(old),
            len(state),
            median_ms(lambda: codec.frame(enc.state()), repeat),
            median_ms(lambda: StreamDecoder().decode(parsed), max(1, repeat // 2)),
        )
    )
    for name, tick in ticks:
        before = Snapshot(seq=1, taken_at=T0, interval=1.0, flows=tuple(flows))
        snap = Snapshot(seq=2, taken_at=T0 + 1, interval=1.0, flows=tuple(tick))
        old = codec.dumps(snap).encode() + b"\n"
        encode_times, decode_times, size = [], [], 0
        for _ in range(repeat):
            enc = StreamEncoder()
            dec = StreamDecoder()
            dec.decode(codec.parse(codec.frame(enc.encode(before))))
            t = time.perf_counter()
            line = codec.frame(enc.delta(snap))
            encode_times.append((time.perf_counter() - t) * 1000)
            record = codec.parse(line)
            t = time.perf_counter()
            dec.decode(record)
            decode_times.append((time.perf_counter() - t) * 1000)
            size = len(line)
        rows.append(
            (
                name,
                len(old),
                size,
                statistics.median(encode_times),
                statistics.median(decode_times),
            )
        )
    return rows


def human(n: int) -> str:
    for unit, scale in (("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    print("| flows | tick | schema 1 (whole snapshot) | delta protocol | encode ms | decode ms |")
    print("|---:|---|---:|---:|---:|---:|")
    for n in (1_000, 10_000):
        for name, old, new, enc_ms, dec_ms in measure(n, args.repeat):
            print(f"| {n:,} | {name} | {human(old)} | {human(new)} | {enc_ms:.1f} | {dec_ms:.1f} |")
    print()
    print("targets (issue 12) at 10,000 flows: a quiet tick < 1 KB, 100 changed flows < 100 KB")


if __name__ == "__main__":
    main()
