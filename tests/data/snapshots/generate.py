"""Writes the recorded snapshots the TUI tests replay: `python -m tests.data.snapshots.generate`.

Built with tests/builders.py and written through netwatch.stream (a state, then deltas),
exactly like `netwatch record` output. A VPN Gate story in four ticks: a browser, a
resolver, an unattributed DNS flow, SoftEther's client fetching the relay list from a
Russian address (alert at tick 2, repeated at tick 3), then the server acting as a relay
for a stranger (high alert at tick 4).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from netwatch import codec
from netwatch.model import (
    Alert,
    Counters,
    Direction,
    Evidence,
    ListHit,
    Owner,
    Scope,
    Severity,
    Snapshot,
    SourceStatus,
    Transport,
)
from netwatch.stream import StreamEncoder
from tests.builders import T0, make_flow, make_label, make_process, make_remote

HERE = Path(__file__).parent

STATUS = SourceStatus(
    mode="local",
    privileged=False,
    capture=False,
    capture_reason="needs CAP_NET_RAW",
    missing=(
        "packet capture (labels, UDP bytes): needs CAP_NET_RAW,CAP_NET_ADMIN",
        "other users' processes: needs CAP_SYS_PTRACE",
    ),
    geoip="bundled DB-IP lite 2026-11-01",
)

FIREFOX = make_process("firefox", pid=2100, user="alice", ppid=1900)
SHELL = make_process("bash", pid=1900, user="alice", ppid=1)
MGR = make_process(
    "vpncmgr", pid=4200, user="alice", ppid=1900, exe="/usr/libexec/softether/vpnclient/vpncmgr"
)
CLIENT = make_process(
    "vpnclient",
    pid=4242,
    user="root",
    ppid=1,
    exe="/usr/libexec/softether/vpnclient/vpnclient",
    cmdline=("/usr/libexec/softether/vpnclient/vpnclient", "execsvc"),
)
SERVER = make_process(
    "vpnserver",
    pid=5000,
    user="root",
    ppid=1,
    exe="/usr/libexec/softether/vpnserver/vpnserver",
    cmdline=("/usr/libexec/softether/vpnserver/vpnserver", "execsvc"),
)
RESOLVED = make_process("systemd-resolve", pid=600, user="systemd-resolve", ppid=1)

GITHUB = make_remote("140.82.112.3", "US", 36459, "GITHUB", ("5 Eyes", "9 Eyes", "14 Eyes"))
RU = replace(
    make_remote("90.189.249.23", "RU", 12389, "PJSC Rostelecom"),
    lists=(ListHit("vpngate", "in the relay list fetched 2026-11-20"),),
    owner=Owner("pending"),
)
JP = replace(
    make_remote("203.0.113.9", "JP", 2516, "KDDI CORPORATION"),
    owner=Owner("ok", name="KDDI CORPORATION", cidr="203.0.113.0/24"),
)
LAN = make_remote("192.168.1.1", None, None, None, scope=Scope.PRIVATE)
LO = make_remote("127.0.0.1", None, None, None, scope=Scope.LOOPBACK)
DNS = make_remote("9.9.9.9", "CH", 19281, "Quad9")


def flows(tick: int) -> tuple:
    t = T0 + tick
    out = [
        make_flow(
            "140.82.112.3",
            443,
            local_port=40110,
            process=FIREFOX,
            sni="github.com",
            label=make_label("tls", "web", vpn=False, evidence=()),
            bytes_sent=2_000 * tick,
            bytes_received=150_000 * tick,
            remote=GITHUB,
            first_seen=T0 - 30,
            last_seen=t,
        ),
        make_flow(
            "192.168.1.1",
            53,
            local_port=5353,
            transport=Transport.UDP,
            process=RESOLVED,
            bytes_sent=80 * tick,
            bytes_received=200 * tick,
            remote=LAN,
            first_seen=T0,
            last_seen=t,
        ),
        make_flow(
            "9.9.9.9",
            53,
            local_port=41000,
            transport=Transport.UDP,
            process=None,
            bytes_sent=None,
            bytes_received=None,
            remote=DNS,
            state=None,
            first_seen=T0 - 5,
            last_seen=t,
        ),
        make_flow(
            "127.0.0.1",
            9930,
            local_ip="127.0.0.1",
            local_port=50000,
            process=MGR,
            bytes_sent=300 * tick,
            bytes_received=900 * tick,
            remote=LO,
            first_seen=T0 - 60,
            last_seen=t,
        ),
        make_flow(
            None,
            0,
            local_ip="0.0.0.0",
            local_port=443,
            direction=Direction.LISTEN,
            process=SERVER,
            state="LISTEN",
            bytes_sent=None,
            bytes_received=None,
            first_seen=T0 - 120,
            last_seen=t,
        ),
    ]
    if tick <= 2:
        out.append(
            make_flow(
                "93.184.215.14",
                80,
                local_port=40200,
                process=make_process("curl", pid=3000, ppid=1900),
                dns_name="example.com",
                bytes_sent=100,
                bytes_received=1_200,
                remote=make_remote(
                    "93.184.215.14", "US", 15133, "EDGECAST", ("5 Eyes", "9 Eyes", "14 Eyes")
                ),
                first_seen=T0 + 1,
                last_seen=t,
            )
        )
    if tick >= 2:
        out.append(
            make_flow(
                "90.189.249.23",
                443,
                local_port=51000,
                process=CLIENT,
                label=make_label("tls", "web", vpn=False, evidence=()),
                bytes_sent=600 * (tick - 1),
                bytes_received=4_200 * (tick - 1),
                remote=RU,
                first_seen=T0 + 2,
                last_seen=t,
            )
        )
    if tick >= 4:
        out.append(
            make_flow(
                "203.0.113.9",
                61422,
                local_ip="192.168.1.13",
                local_port=443,
                direction=Direction.INBOUND,
                process=SERVER,
                label=make_label(
                    "softether", "vpn", vpn=True, evidence=(("http", "POST /vpnsvc/connect.cgi"),)
                ),
                bytes_sent=800_000,
                bytes_received=90_000,
                remote=JP,
                first_seen=T0 + 4,
                last_seen=t,
            )
        )
    return tuple(out)


def list_fetch(tick: int) -> Alert:
    key = make_flow("90.189.249.23", 443, local_port=51000).flow.key
    return Alert(
        id="vpngate.list_fetch:vpnclient|90.189.249.23",
        rule_id="vpngate.list_fetch",
        title="VPN Gate relay list fetched",
        severity=Severity.MEDIUM,
        identifier="vpnclient|90.189.249.23",
        message="vpnclient made a short TLS exchange with a VPN Gate relay in RU (no DNS lookup)",
        first_seen=T0 + 2,
        last_seen=T0 + tick,
        count=tick - 1,
        flow_key=key,
        process=CLIENT,
        remote=RU,
        evidence=(
            Evidence("process", "vpnclient"),
            Evidence("remote_list", "vpngate"),
            Evidence("dns_before", "none"),
        ),
        tags=("vpngate",),
    )


def relay(tick: int) -> Alert:
    key = make_flow("203.0.113.9", 61422, local_ip="192.168.1.13", local_port=443).flow.key
    return Alert(
        id="vpngate.relay:vpnserver|443",
        rule_id="vpngate.relay_inbound",
        title="This PC serves as a VPN Gate relay",
        severity=Severity.HIGH,
        identifier="vpnserver|443",
        message="vpnserver accepted a SoftEther session from a stranger in JP",
        first_seen=T0 + tick,
        last_seen=T0 + tick,
        flow_key=key,
        process=SERVER,
        remote=JP,
        evidence=(
            Evidence("listen", "vpnserver on TCP 443"),
            Evidence("inbound_peer", "203.0.113.9 (JP, AS2516)"),
            Evidence("label", "softether"),
        ),
        tags=("vpngate", "relay"),
    )


def story() -> list[Snapshot]:
    snaps = []
    for tick in range(1, 5):
        alerts: tuple[Alert, ...] = ()
        if tick in (2, 3):
            alerts = (list_fetch(tick),)
        if tick == 4:
            alerts = (relay(tick),)
        fl = flows(tick)
        snaps.append(
            Snapshot(
                seq=tick,
                taken_at=T0 + tick,
                interval=1.0,
                flows=fl,
                alerts=alerts,
                status=STATUS,
                counters=Counters(sockets=len(fl), flows=len(fl)),
            )
        )
    return snaps


def privileged() -> list[Snapshot]:
    status = SourceStatus(
        mode="local", privileged=True, capture=True, geoip="bundled DB-IP lite 2026-11-01"
    )
    return [replace(s, status=status) for s in story()]


def write(name: str, snaps: list[Snapshot]) -> None:
    encoder = StreamEncoder()
    (HERE / name).write_bytes(b"".join(codec.frame(encoder.encode(s)) for s in snaps))


if __name__ == "__main__":
    write("vpngate.jsonl", story())
    write("privileged.jsonl", privileged())
