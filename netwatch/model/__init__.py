"""Pure types that cross stage boundaries: frozen, slotted dataclasses and enums.

Nothing here imports from the rest of netwatch or touches the OS. Everything is re-exported
from this package so callers write `from netwatch.model import Flow`.
"""

from netwatch.model.alert import LOG_TAG, Alert, AlertState, Severity
from netwatch.model.flow import (
    Attribution,
    CertNames,
    Confidence,
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
from netwatch.model.host import HostFacts, SoftEtherConfig
from netwatch.model.identity import keep, missing, recall, same_objects
from netwatch.model.packet import PacketContext, PacketFacts, PacketMeta
from netwatch.model.remote import DataSource, EnrichedFlow, ListHit, Owner, RemoteInfo, Scope
from netwatch.model.snapshot import Counters, Snapshot, SourceStatus
from netwatch.model.sockets import SocketEntry, SocketTable

__all__ = [
    "LOG_TAG",
    "Alert",
    "AlertState",
    "Attribution",
    "CertNames",
    "Confidence",
    "Counters",
    "DataSource",
    "Direction",
    "Endpoint",
    "EnrichedFlow",
    "Evidence",
    "Flow",
    "FlowKey",
    "HostFacts",
    "IPAddress",
    "Label",
    "ListHit",
    "Owner",
    "PacketContext",
    "PacketFacts",
    "PacketMeta",
    "ProcessRef",
    "RemoteInfo",
    "Scope",
    "Severity",
    "Snapshot",
    "SoftEtherConfig",
    "SocketEntry",
    "SocketTable",
    "SourceStatus",
    "Transport",
    "parse_ip",
    "keep",
    "missing",
    "recall",
    "same_objects",
]
