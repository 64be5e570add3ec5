"""Score `netwatch analyze` against a labelled capture corpus (nDPI's labels).

    python bench/corpus_score.py DIR

DIR holds pcaps and a `labels.jsonl` with one line per flow: file, transport, both endpoints
`a`/`b` ([ip, port]), `ndpi_protocol`, `ndpi_category`. A flow nDPI files under category VPN
must come out `vpn: true`; one in a known non-VPN category must not; `Unknown` is not scored.
Nothing from DIR is copied anywhere; this is a development check, not a test.

Besides the overall count it prints, per labelled protocol, how many flows netwatch called
VPN and with which labels and confidences: for VPN protocols that is the recall, for the
others the false-positive rate; then the recall averaged over VPN protocols (each protocol
weighs the same, however many flows it has) and the overall false-positive rate. A flow
netwatch did not output at all counts as missed (VPN) but not as a false positive.

`tests/golden/captures/labels.jsonl` labels the project's own golden captures in the same format, by
what `tests/golden/record.py` ran to make them (not by netwatch's output); the traffic to
www.vpngate.net is labelled VPN as nDPI files traffic to VPN services by host name (for
example `OpenVPN.NordVPN`, `TLS.Tor`), and the datagrams inside the WireGuard tunnel are not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path


def _pair(transport: str, a: list, b: list) -> tuple:
    ends = sorted([(str(a[0]), int(a[1] or 0)), (str(b[0]), int(b[1] or 0))])
    return (transport, *ends)


def analyze(path: Path) -> dict[tuple, list[dict]]:
    res = subprocess.run(
        [sys.executable, "-m", "netwatch", "analyze", str(path), "--format", "jsonl"],
        capture_output=True,
        text=True,
        check=False,
        cwd=Path(__file__).resolve().parent.parent,
    )
    if res.returncode != 0:
        print(f"{path.name}: analyze failed: {res.stderr.strip()}")
    out: dict[tuple, list[dict]] = defaultdict(list)
    for line in res.stdout.splitlines():
        rec = json.loads(line)
        if rec["type"] == "flow":
            key = _pair(rec["transport"], [rec["src"], rec["sport"]], [rec["dst"], rec["dport"]])
            out[key].append(rec)
    return out


@dataclass
class _Tally:
    """One labelled protocol: its flows, how many netwatch called VPN, and with what labels."""

    vpn: bool = False
    flows: int = 0
    said_vpn: int = 0
    not_found: int = 0
    labels: Counter[str] = field(default_factory=Counter)

    def add(self, vpn: bool, recs: list[dict]) -> None:
        """Count one labelled flow; `recs` are netwatch's records for its endpoints."""
        self.vpn = vpn
        self.flows += 1
        if not recs:
            self.not_found += 1
            return
        # A flow split into several records (a restart) counts as VPN only if all say so.
        self.said_vpn += all(r["vpn"] for r in recs)
        for r in recs:
            self.labels[f"{r['app']}/{r['confidence']}" if r["app"] else "-"] += 1


def _pct(part: int, whole: int) -> str:
    return "-" if not whole else f"{100 * part / whole:.1f}%"


def per_protocol_table(per: dict[str, _Tally]) -> list[str]:
    """Recall per VPN protocol, false-positive rate per other protocol, then the averages."""
    out = [
        "| labelled protocol | truth | flows | netwatch VPN | not found | recall / FP rate "
        "| netwatch records (app/confidence) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, t in sorted(per.items(), key=lambda kv: (not kv[1].vpn, kv[0].lower())):
        said = ", ".join(f"{k} x{n}" for k, n in t.labels.most_common())
        kind = "recall" if t.vpn else "FP"
        out.append(
            f"| {name} | {'VPN' if t.vpn else 'not VPN'} | {t.flows} | {t.said_vpn} "
            f"| {t.not_found} | {kind} {_pct(t.said_vpn, t.flows)} | {said} |"
        )
    vpn = [t for t in per.values() if t.vpn]
    other = [t for t in per.values() if not t.vpn]
    macro = sum(t.said_vpn / t.flows for t in vpn) / len(vpn) if vpn else None
    hit, n = sum(t.said_vpn for t in vpn), sum(t.flows for t in vpn)
    fp, m = sum(t.said_vpn for t in other), sum(t.flows for t in other)
    out += [
        "",
        "| VPN protocols | recall averaged per protocol | recall over all VPN flows "
        "| non-VPN flows | false positives | false-positive rate |",
        "|---|---|---|---|---|---|",
        f"| {len(vpn)} | {'-' if macro is None else f'{100 * macro:.1f}%'} "
        f"| {_pct(hit, n)} ({hit}/{n}) | {m} | {fp} | {_pct(fp, m)} |",
    ]
    return out


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    root = Path(argv[0]).resolve()
    labels = [json.loads(x) for x in (root / "labels.jsonl").read_text().splitlines() if x]
    by_file: dict[str, list[dict]] = defaultdict(list)
    for lab in labels:
        by_file[lab["file"]].append(lab)
    ok = bad = missing = unscored = 0
    rows = []
    per: dict[str, _Tally] = defaultdict(_Tally)
    for name, labs in sorted(by_file.items()):
        flows = analyze(root / name)
        for lab in labs:
            category = lab["ndpi_category"]
            if category == "Unknown":
                unscored += 1
                continue
            want = category == "VPN"
            recs = flows.get(_pair(lab["transport"], lab["a"], lab["b"]))
            per[lab["ndpi_protocol"]].add(want, recs or [])
            if not recs:
                missing += 1
                rows.append((name, lab, "no such flow in netwatch's output"))
                continue
            wrong = [r for r in recs if bool(r["vpn"]) != want]
            if not wrong:
                ok += 1
            else:
                bad += 1
                said = ", ".join(f"app={r['app']} vpn={r['vpn']}" for r in wrong)
                rows.append((name, lab, f"netwatch says {said}"))
    for name, lab, why in rows:
        print(f"MISS {name} {lab['transport']} {lab['a']} {lab['b']} {lab['ndpi_protocol']}: {why}")
    total = ok + bad + missing
    print("| scored flows | correct | wrong | not found | unscored (Unknown) |")
    print("|---|---|---|---|---|")
    print(f"| {total} | {ok} | {bad} | {missing} | {unscored} |")
    print()
    print("\n".join(per_protocol_table(per)))
    return 0 if not bad and not missing else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
