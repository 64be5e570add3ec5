"""Builders for model objects, so tests state only what matters to them."""

from __future__ import annotations

from netwatch.model import (
    Alert,
    Attribution,
    CertNames,
    Confidence,
    Direction,
    Endpoint,
    EnrichedFlow,
    Evidence,
    Flow,
    FlowKey,
    Label,
    ProcessRef,
    RemoteInfo,
    Scope,
    Severity,
    Snapshot,
    SourceStatus,
    Transport,
    parse_ip,
)

T0 = 1_700_000_000.0


def make_process(
    name: str = "curl",
    pid: int = 4242,
    exe: str | None = None,
    cmdline: tuple[str, ...] | None = None,
    user: str | None = "alice",
    ppid: int | None = 1,
    create_time: float = T0 - 100,
) -> ProcessRef:
    return ProcessRef(
        pid=pid,
        create_time=create_time,
        name=name,
        exe=exe if exe is not None else f"/usr/bin/{name}",
        cmdline=cmdline if cmdline is not None else (name,),
        user=user,
        ppid=ppid,
    )


def make_label(
    name: str = "openvpn",
    category: str = "vpn",
    vpn: bool = True,
    confidence: Confidence = Confidence.HIGH,
    evidence: tuple[tuple[str, str], ...] = (("opcode", "P_CONTROL_HARD_RESET_CLIENT_V2"),),
) -> Label:
    return Label(name, category, vpn, confidence, tuple(Evidence(k, v) for k, v in evidence))


def make_remote(
    ip: str = "90.189.249.23",
    country: str | None = "RU",
    asn: int | None = 12389,
    as_org: str | None = "PJSC Rostelecom",
    jurisdiction: tuple[str, ...] = (),
    scope: Scope = Scope.GLOBAL,
) -> RemoteInfo:
    return RemoteInfo(
        ip=parse_ip(ip),
        scope=scope,
        country=country,
        asn=asn,
        as_org=as_org,
        jurisdiction=jurisdiction,
    )


def make_flow(
    remote_ip: str | None = "90.189.249.23",
    remote_port: int = 443,
    local_ip: str = "192.168.1.13",
    local_port: int = 51000,
    transport: Transport = Transport.TCP,
    direction: Direction = Direction.OUTBOUND,
    process: ProcessRef | None = None,
    state: str | None = "ESTABLISHED",
    bytes_sent: int | None = 5,
    bytes_received: int | None = 4200,
    label: Label | None = None,
    sni: str | None = None,
    dns_name: str | None = None,
    first_seen: float | None = T0,
    last_seen: float | None = T0 + 1,
    remote: RemoteInfo | None = None,
    with_remote: bool = True,
    tls_cert: CertNames | None = None,
) -> EnrichedFlow:
    key = FlowKey(
        transport,
        Endpoint(parse_ip(local_ip), local_port),
        None if remote_ip is None else Endpoint(parse_ip(remote_ip), remote_port),
    )
    flow = Flow(
        key=key,
        direction=direction,
        state=state,
        process=process,
        attribution=Attribution.SOCKET if process else Attribution.UNKNOWN,
        first_seen=first_seen,
        last_seen=last_seen,
        bytes_sent=bytes_sent,
        bytes_received=bytes_received,
        packets_sent=None,
        packets_received=None,
        dns_name=dns_name,
        sni=sni,
        label=label,
        tls_cert=tls_cert,
    )
    if remote is None and with_remote and remote_ip is not None:
        remote = make_remote(remote_ip)
    return EnrichedFlow(flow, remote)


def make_alert(
    rule_id: str = "vpngate.list_fetch",
    severity: Severity = Severity.MEDIUM,
    message: str = "vpnclient fetched the VPN Gate relay list",
    process: ProcessRef | None = None,
    first_seen: float = T0,
    count: int = 1,
    alert_id: str | None = None,
    label: Label | None = None,
) -> Alert:
    flow = make_flow(process=process)
    return Alert(
        id=alert_id or f"{rule_id}:1",
        rule_id=rule_id,
        title=rule_id,
        severity=severity,
        identifier="vpnclient|90.189.249.23",
        message=message,
        first_seen=first_seen,
        last_seen=first_seen + count,
        count=count,
        flow_key=flow.flow.key,
        process=process,
        remote=flow.remote,
        evidence=(Evidence("sni", "www.vpngate.net"),),
        label=label,
        direction=flow.flow.direction,
    )


def make_snapshot(
    seq: int = 1,
    flows: tuple[EnrichedFlow, ...] = (),
    alerts: tuple[Alert, ...] = (),
    taken_at: float | None = None,
    status: SourceStatus | None = None,
) -> Snapshot:
    return Snapshot(
        seq=seq,
        taken_at=taken_at if taken_at is not None else T0 + seq,
        interval=1.0,
        flows=flows,
        alerts=alerts,
        status=status or SourceStatus(mode="replay"),
    )
