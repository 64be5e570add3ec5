"""Alerts: what a rule found, with evidence, and its lifecycle (first/last seen, count)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from netwatch.model.flow import Direction, Evidence, FlowKey, Label, ProcessRef
from netwatch.model.policy import Action
from netwatch.model.remote import RemoteInfo


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
