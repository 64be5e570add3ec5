"""`netwatch analyze FILE --db PATH` stores the capture's alerts so `export` can read them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from netwatch.store import integrity_check

T0 = 1_700_000_000.0


def _wireguard_pcap(path: Path) -> Path:
    """A WireGuard handshake to 198.51.100.20 (an unexpected VPN: no policy expects it)."""
    sender = bytes.fromhex("11223344")
    init = b"\x01\x00\x00\x00" + sender + bytes(range(132)) + b"\x00" * 8
    resp = b"\x02\x00\x00\x00" + b"\x55\x66\x77\x88" + sender + bytes(80)
    data = b"\x04\x00\x00\x00" + b"\x55\x66\x77\x88" + (1).to_bytes(8, "little") + bytes(32)
    a = IP(src="192.0.2.1", dst="198.51.100.20") / UDP(sport=45000, dport=51820)
    b = IP(src="198.51.100.20", dst="192.0.2.1") / UDP(sport=51820, dport=45000)
    frames = [Ether() / p for p in (a / Raw(init), b / Raw(resp), a / Raw(data))]
    for i, f in enumerate(frames):
        f.time = T0 + i * 0.01
    wrpcap(str(path), frames)
    return path


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "netwatch", *args],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_analyze_db_then_export(tmp_path: Path) -> None:
    pcap = _wireguard_pcap(tmp_path / "wg.pcap")
    db = tmp_path / "store" / "n.db"
    res = _cli("analyze", str(pcap), "--format", "jsonl", "--db", str(db))
    assert res.returncode == 0, res.stderr
    printed = [json.loads(x) for x in res.stdout.splitlines()]
    alerts = {r["id"]: r for r in printed if r["type"] == "alert"}
    assert alerts, "the capture should raise at least one alert"
    exported = _cli("export", "--db", str(db))
    assert exported.returncode == 0, exported.stderr
    stored = {r["id"]: r for r in map(json.loads, exported.stdout.splitlines())}
    assert stored == alerts
    assert integrity_check(db) == "ok"
    # Analysing the same file again updates the same alerts rather than duplicating them.
    assert _cli("analyze", str(pcap), "--format", "jsonl", "--db", str(db)).returncode == 0
    again = _cli("export", "--db", str(db)).stdout.splitlines()
    assert len(again) == len(alerts)
