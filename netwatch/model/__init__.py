"""Pure types that cross stage boundaries: frozen, slotted dataclasses and enums.

Nothing here imports from the rest of netwatch or touches the OS. Everything is re-exported
from this package so callers write `from netwatch.model import Flow`.
"""

from netwatch.model.alert import Alert, AlertState, Severity
from netwatch.model.flow import (
    Attribution,
    CertNames,
    Confidence,
    Container,
    Direction,
    Endpoint,
    Evidence,
    Flow,
    FlowKey,
    IPAddress,
    Label,
    ProcessRef,
    Transport,
    parse_ip,
)
from netwatch.model.host import (
    CheckFacts,
    DefaultRoute,
    Finding,
    HostFacts,
    InstalledVpn,
    Listener,
    SoftEtherAccount,
    SoftEtherConfig,
)
from netwatch.model.packet import PacketContext, PacketFacts, PacketMeta
from netwatch.model.policy import (
    Action,
    EndpointPattern,
    ExpectedVpn,
    IPNetwork,
    Policy,
    TunnelPolicy,
)
from netwatch.model.provider import Audit, Fact, Incident, ProviderFacts
from netwatch.model.remote import DataSource, EnrichedFlow, ListHit, Owner, RemoteInfo, Scope
from netwatch.model.snapshot import Counters, NamedShare, Snapshot, SourceStatus
from netwatch.model.sockets import ConnectionView, SocketEntry, SocketTable

__all__ = [
    "Action",
    "Alert",
    "Audit",
    "AlertState",
    "Attribution",
    "CertNames",
    "Container",
    "Confidence",
    "Counters",
    "DataSource",
    "Direction",
    "Endpoint",
    "EndpointPattern",
    "EnrichedFlow",
    "Evidence",
    "Fact",
    "ExpectedVpn",
    "Flow",
    "FlowKey",
    "CheckFacts",
    "DefaultRoute",
    "Finding",
    "HostFacts",
    "InstalledVpn",
    "Listener",
    "IPAddress",
    "Incident",
    "IPNetwork",
    "Label",
    "ListHit",
    "Owner",
    "NamedShare",
    "PacketContext",
    "PacketFacts",
    "PacketMeta",
    "Policy",
    "ProcessRef",
    "ProviderFacts",
    "RemoteInfo",
    "Scope",
    "Severity",
    "Snapshot",
    "SoftEtherAccount",
    "SoftEtherConfig",
    "SocketEntry",
    "SocketTable",
    "ConnectionView",
    "SourceStatus",
    "Transport",
    "TunnelPolicy",
    "parse_ip",
]
