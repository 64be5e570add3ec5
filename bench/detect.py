"""Rule evaluation cost per flow with the full bundled pack over synthetic flows.

    python bench/detect.py [--flows 100000] [--repeat 3]

Builds a realistic mix of enriched flows (browsing, DNS, VPN protocols, SoftEther, listeners,
inbound peers), then times `RuleEngine.evaluate` on all of them in one call (the `analyze` /
`snapshot` case), a second call on the same flows (the daemon's steady state: alerts already
open), and each rule alone. Prints tables; asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netwatch.detect.engine import RuleEngine  # noqa: E402
from netwatch.detect.loader import load_rules  # noqa: E402
from netwatch.detect.rule import RuleSet  # noqa: E402
from netwatch.model import (  # noqa: E402
    Attribution,
    Confidence,
    Direction,
    Endpoint,
    EnrichedFlow,
    Evidence,
    Flow,
    FlowKey,
    Label,
    ListHit,
    ProcessRef,
    RemoteInfo,
    Scope,
    Transport,
    parse_ip,
)

T0 = 1_700_000_000.0
COUNTRIES = ["US", "DE", "JP", "RU", "FR", "NL", "GB", "BR", "CN", "KR", "SE", "CA"]
EYES = {
    "US": ("5 Eyes",),
    "GB": ("5 Eyes",),
    "CA": ("5 Eyes",),
    "NL": ("9 Eyes",),
    "DE": ("14 Eyes",),
}
PROCS = ["firefox", "chrome", "curl", "python3", "systemd-resolved", "ssh", "thunderbird", "slack"]
VPN = [
    ("openvpn", "openvpn", Transport.UDP, 1194),
    ("wireguard-go", "wireguard", Transport.UDP, 51820),
]


def _proc(name: str, pid: int) -> ProcessRef:
    return ProcessRef(pid, T0 - 100, name, f"/usr/bin/{name}", (name,), "alice", 1)


def _remote(rng: random.Random, ip: str, lists: tuple[ListHit, ...] = ()) -> RemoteInfo:
    cc = rng.choice(COUNTRIES)
    return RemoteInfo(
        parse_ip(ip), Scope.GLOBAL, cc, rng.randint(100, 60000), "Example Net", EYES.get(cc, ()),
        lists=lists,
    )  # fmt: skip


def make_flows(n: int, seed: int = 7) -> list[EnrichedFlow]:
    """`n` flows: 70% browsing, 10% DNS, 5% VPN, 5% SoftEther, 5% listeners, 5% inbound."""
    rng = random.Random(seed)
    out: list[EnrichedFlow] = []
    local = parse_ip("192.168.1.13")
    for i in range(n):
        octets = (
            rng.randint(1, 223),
            rng.randint(0, 255),
            rng.randint(0, 255),
            rng.randint(1, 254),
        )
        ip = ".".join(map(str, octets))
        kind = rng.random()
        pid = 1000 + i % 500
        transport, rport, direction = Transport.TCP, 443, Direction.OUTBOUND
        label, sni, proc, lists = None, None, _proc(rng.choice(PROCS), pid), ()
        remote_ip: str | None = ip
        if kind < 0.70:
            sni = f"www.site{rng.randint(1, 5000)}.example"
            label = Label("tls", "web", False, Confidence.HIGH, (Evidence("sni", sni),))
        elif kind < 0.80:
            transport, rport = Transport.UDP, 53
            label = Label("dns", "network", False, Confidence.HIGH)
        elif kind < 0.85:
            name, lname, transport, rport = rng.choice(VPN)
            proc = _proc(name, pid)
            label = Label(lname, "vpn", True, Confidence.HIGH, (Evidence("handshake", "init"),))
            if rng.random() < 0.2:
                lists = (ListHit("vpngate", "relay"),)
        elif kind < 0.90:
            proc = _proc(rng.choice(["vpnclient", "vpncmgr", "vpnserver"]), pid)
        elif kind < 0.95:
            direction, remote_ip = Direction.LISTEN, None
        else:
            direction, proc = (
                Direction.INBOUND,
                _proc(rng.choice(["sshd", "nginx", "vpnserver"]), pid),
            )
        key = FlowKey(
            transport,
            Endpoint(local, 40000 + i % 20000),
            None if remote_ip is None else Endpoint(parse_ip(remote_ip), rport),
        )
        flow = Flow(
            key, direction, "ESTABLISHED", proc, Attribution.SOCKET, T0 + i * 0.001,
            T0 + i * 0.001 + rng.random() * 30, rng.randint(0, 10**6), rng.randint(0, 10**7),
            label=label, sni=sni,
        )  # fmt: skip
        remote = None if remote_ip is None else _remote(rng, remote_ip, lists)
        out.append(EnrichedFlow(flow, remote))
    return out


def _time(engine: RuleEngine, flows: list[EnrichedFlow], now: float) -> tuple[float, int]:
    start = time.perf_counter()
    alerts = engine.evaluate(flows, now)
    return time.perf_counter() - start, len(alerts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    start = time.perf_counter()
    rules = load_rules()
    load_ms = (time.perf_counter() - start) * 1000
    flows = make_flows(args.flows)
    now = T0 + args.flows * 0.001 + 60
    n = len(flows)
    print(
        f"rule pack: {len(rules.rules)} rules, {sum(len(r.cases) for r in rules.rules)} cases, "
        f"loaded in {load_ms:.1f} ms"
    )
    print(
        f"flows: {n} synthetic "
        "(70% TLS browsing, 10% DNS, 5% VPN, 5% SoftEther, 5% listen, 5% inbound)"
    )
    print()
    print(f"{'pass':<36} {'best total':>11} {'per flow':>10} {'flows/s':>10} {'alerts':>7}")
    rows = []
    for label, warm in (
        ("full pack, first pass (analyze)", False),
        ("full pack, same flows again (daemon)", True),
    ):
        best, alerts = float("inf"), 0
        for _ in range(args.repeat):
            engine = RuleEngine(rules)
            if warm:
                engine.evaluate(flows, now)
            t, alerts = _time(engine, flows, now + 1)
            best = min(best, t)
        rows.append((label, best, alerts))
    empty = RuleEngine(RuleSet(()))
    t_empty, _ = _time(empty, flows, now)
    rows.append(("no rules (engine overhead)", t_empty, 0))
    for label, t, alerts in rows:
        print(f"{label:<36} {t * 1000:>8.0f} ms {t / n * 1e6:>7.2f} µs {n / t:>10.0f} {alerts:>7}")
    print()
    print(f"{'rule alone, first pass':<36} {'total':>11} {'per flow':>10} {'alerts':>7}")
    for rule in rules.rules:
        engine = RuleEngine(RuleSet((rule,)))
        t, alerts = _time(engine, flows, now)
        print(f"{rule.id:<36} {t * 1000:>8.0f} ms {t / n * 1e6:>7.2f} µs {alerts:>7}")
    tracemalloc.start()
    engine = RuleEngine(rules)
    engine.evaluate(flows, now)
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print()
    print(
        f"engine state after one pass: {current / 1e6:.1f} MB held, "
        f"{peak / 1e6:.1f} MB peak during evaluate"
    )


if __name__ == "__main__":
    main()
