"""Alerts: what a rule found, with evidence, and its lifecycle (first/last seen, count)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from netwatch.model.flow import Direction, Evidence, FlowKey, Label, ProcessRef
from netwatch.model.policy import Action
from netwatch.model.remote import RemoteInfo

ALERT_ID = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)+:[0-9a-f]{10}:[0-9]+")
"""An alert id as `detect.suppress.alert_id` makes them, `rule:digest:time` (rule ids as the
rule loader takes them): all `netwatch watch --alert` accepts, since a desktop notification's
"open" action passes the id there as a command-line argument."""


class Severity(StrEnum):
    """How much an alert matters, from info to critical."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Return 0 (info) to 4 (critical), to compare and filter severities."""
        return ("info", "low", "medium", "high", "critical").index(self.value)


class AlertState(StrEnum):
    """Whether the condition is still seen."""

    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Alert:
    """One finding. Repeats with the same `identifier` raise `count`, not new alerts."""

    id: str
    rule_id: str
    title: str
    severity: Severity
    identifier: str
    message: str
    first_seen: float
    last_seen: float
    count: int = 1
    state: AlertState = AlertState.OPEN
    flow_key: FlowKey | None = None
    process: ProcessRef | None = None
    remote: RemoteInfo | None = None
    evidence: tuple[Evidence, ...] = ()
    tags: tuple[str, ...] = ()
    action: Action = Action.ALERT
    """What the policy does with this rule's findings: `alert`, or `log` (stored and exported
    like any alert, shown dimmed below the others in the dashboard: for the record, not for
    attention). Ignored findings never become alerts."""
    label: Label | None = None
    """The flow's label when the alert was raised or last updated: what the flow was taken
    for, how sure, and on what evidence, so an alert can be weighed without its flow."""
    direction: Direction | None = None
    """Who initiated the alert's flow (`Flow.direction`): exports put the initiator first,
    as ECS's `source`, so an inbound connection's remote side is the source. None when the
    alert has no flow, or for records written before the field existed."""
