"""`netwatch snapshot`: one sample of the live sockets, as a table or as JSON flow records.

A container's socket (another network namespace's) shows its process as `name@container`
(the container's name, else its namespace's inode); the JSON record has `container`.

The sample runs through the same engine the dashboard and the daemon use
(`pipeline.build.build_live_engine`). `--format jsonl` writes one `codec.flow_to_dict`
record per socket: that record is the contract `analyze`, `export` and the daemon reuse;
the rule pack runs once over the sample and its alerts follow the flows (`type: alert`).
What the sampler could not see (other users' processes without root) is said on one stderr
line, with how to get the full view (sudo, or the daemon and the `netwatch` group).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

from netwatch.cli.common import add_format, add_geoip, label_note, write_lines
from netwatch.model import EnrichedFlow, Snapshot, units


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the `snapshot` subcommand."""
    parser = sub.add_parser(
        "snapshot",
        help="one enriched sample of the live sockets",
        description="Sample every socket once and print it with its process.",
    )
    add_format(parser)
    add_geoip(parser)
    parser.add_argument("--config", type=Path, metavar="FILE", help="config file (policy)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Take one sample, run the rules over it once, and print both."""
    from netwatch import codec
    from netwatch.cli import stages
    from netwatch.pipeline.build import build_live_engine
    from netwatch.sources.privileges import describe

    detector = stages.detector(args.config)
    enricher = stages.enricher(args.geoip_db)
    try:
        snap = build_live_engine(enricher=enricher, detector=detector).tick()
    finally:
        enricher.close()
    if args.format == "jsonl":
        write_lines(codec.dumps(f) for f in sort_flows(snap.flows))
        write_lines(codec.dumps(a) for a in snap.alerts)
    else:
        write_lines(render_table(snap))
        write_lines(render_alerts(snap))
    note = describe(snap.status)
    if note:
        sys.stderr.write(f"netwatch: {note}\n")
    return 0


def sort_flows(flows: Iterable[EnrichedFlow]) -> list[EnrichedFlow]:
    """Processes by name and pid, unknown owners last; then transport and local endpoint."""

    def key(ef: EnrichedFlow) -> tuple[int, str, int, str, int, str]:
        f, p = ef.flow, ef.flow.process
        k = f.key
        return (
            p is None,
            "" if p is None else p.name,
            0 if p is None else p.pid,
            k.transport.value,
            k.local.port,
            str(k.local.ip),
        )

    return sorted(flows, key=key)


def table_row(ef: EnrichedFlow, geo: bool) -> list[str]:
    """One row of the table for one flow."""
    f, p, r = ef.flow, ef.flow.process, ef.remote
    c = f.container
    name = "?" if p is None else p.name
    row = [
        name if c is None else f"{name}@{c.name or c.netns}",
        "-" if p is None else str(p.pid),
        "-" if p is None or p.user is None else p.user,
        f.key.transport.value,
        f.direction.value,
        str(f.key.local),
        "*" if f.key.remote is None else str(f.key.remote),
        f.state or "-",
        "-" if f.label is None else f.label.summary(),
        units.short(f.bytes_sent),
        units.short(f.bytes_received),
    ]
    if geo:
        row.append("-" if r is None or r.country is None else r.country)
        asn = "-" if r is None or r.asn is None else f"AS{r.asn}"
        org = "" if r is None or not r.as_org else f" {r.as_org}"
        row.append(asn + org)
    return row


def render_table(snap: Snapshot) -> list[str]:
    """Aligned text table; country/ASN columns appear when any flow has remote info."""
    flows = sort_flows(snap.flows)
    geo = any(ef.remote is not None for ef in flows)
    head = ["PROCESS", "PID", "USER", "PROTO", "DIR", "LOCAL", "REMOTE", "STATE", "LABEL",
            "UP", "DOWN"]  # fmt: skip
    if geo:
        head += ["CC", "ASN"]
    rows = [head, *(table_row(ef, geo) for ef in flows)]
    return _align(rows) + [f"{len(flows)} sockets, sampled in {snap.counters.sample_ms:.1f} ms"]


def render_alerts(snap: Snapshot) -> list[str]:
    """One line per alert, most severe first, after the table."""
    if not snap.alerts:
        return []
    alerts = sorted(snap.alerts, key=lambda a: (-a.severity.rank, a.rule_id))
    return ["", f"{len(alerts)} alerts:"] + [
        f"  [{a.severity.value.upper()}] {a.rule_id}: {a.message}{label_note(a)}" for a in alerts
    ]


def _align(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = {9, 10}  # byte columns
    out = []
    for r in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return out
