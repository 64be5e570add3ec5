"""Score `netwatch analyze` against a labelled capture corpus (nDPI's labels).

    python bench/corpus_score.py DIR

DIR holds pcaps and a `labels.jsonl` with one line per flow: file, transport, both endpoints
`a`/`b` ([ip, port]), `ndpi_protocol`, `ndpi_category`. A flow nDPI files under category VPN
must come out `vpn: true`; one in a known non-VPN category must not; `Unknown` is not scored.
Nothing from DIR is copied anywhere; this is a development check, not a test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
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


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    root = Path(argv[0])
    labels = [json.loads(x) for x in (root / "labels.jsonl").read_text().splitlines() if x]
    by_file: dict[str, list[dict]] = defaultdict(list)
    for lab in labels:
        by_file[lab["file"]].append(lab)
    ok = bad = missing = unscored = 0
    rows = []
    for name, labs in sorted(by_file.items()):
        flows = analyze(root / name)
        for lab in labs:
            category = lab["ndpi_category"]
            if category == "Unknown":
                unscored += 1
                continue
            want = category == "VPN"
            recs = flows.get(_pair(lab["transport"], lab["a"], lab["b"]))
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
    return 0 if not bad and not missing else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
