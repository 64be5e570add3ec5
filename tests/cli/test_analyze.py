"""`netwatch analyze`: flows then alerts as JSONL, a readable table, and bad files.

Captures are written here with scapy, byte-exact to each protocol's layout; the remote side
is mapped to a country with a test mmdb passed through `--geoip-db`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw
from scapy.utils import wrpcap

from tests.mmdb import write_mmdb

T0 = 1_700_000_000.0
HOST, WG_PEER, WEB = "192.0.2.1", "198.51.100.20", "203.0.113.80"


def _eth(pkt: Packet) -> Packet:
    return Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / pkt


def _wireguard_handshake() -> list[Packet]:
    """Initiation (148 B) and response (92 B) whose receiver index echoes the sender index."""
    sender = bytes.fromhex("11223344")
    init = b"\x01\x00\x00\x00" + sender + bytes(range(132)) + b"\x00" * 8
    resp = b"\x02\x00\x00\x00" + b"\x55\x66\x77\x88" + sender + bytes(80)
    assert (len(init), len(resp)) == (148, 92)
    data = b"\x04\x00\x00\x00" + b"\x55\x66\x77\x88" + (1).to_bytes(8, "little") + bytes(32)
    a = IP(src=HOST, dst=WG_PEER) / UDP(sport=45000, dport=51820)
    b = IP(src=WG_PEER, dst=HOST) / UDP(sport=51820, dport=45000)
    return [a / Raw(init), b / Raw(resp), a / Raw(data)]


def _dns_then_http() -> list[Packet]:
    q = IP(src=HOST, dst="192.0.2.53") / UDP(sport=33000, dport=53)
    r = IP(src="192.0.2.53", dst=HOST) / UDP(sport=53, dport=33000)
    name = "files.example.org"

    def a(**kw: object) -> Packet:
        return IP(src=HOST, dst=WEB) / TCP(sport=41000, dport=80, **kw)

    def b(**kw: object) -> Packet:
        return IP(src=WEB, dst=HOST) / TCP(sport=80, dport=41000, **kw)

    return [
        q / DNS(id=7, rd=1, qd=DNSQR(qname=name)),
        r / DNS(id=7, qr=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, rdata=WEB)),
        a(flags="S", seq=1),
        b(flags="SA", seq=100, ack=2),
        a(flags="A", seq=2, ack=101),
        a(flags="PA", seq=2, ack=101)
        / Raw(b"GET /index.html HTTP/1.1\r\nHost: files.example.org\r\n\r\n"),
        b(flags="PA", seq=101, ack=60) / Raw(b"HTTP/1.1 200 OK\r\n\r\nhi"),
    ]


def _capture(tmp_path: Path, pkts: list[Packet], name: str = "c.pcap") -> Path:
    frames = [_eth(p) for p in pkts]
    for i, f in enumerate(frames):
        f.time = T0 + i * 0.01
    path = tmp_path / name
    wrpcap(str(path), frames)
    return path


def _run(
    cmd: list[str], root: Path, *args: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [*cmd, "analyze", *args], capture_output=True, text=True, timeout=120, cwd=root
    )
    if check:
        assert res.returncode == 0, res.stderr
    return res


def _records(res: subprocess.CompletedProcess[str]) -> list[dict]:
    return [json.loads(line) for line in res.stdout.splitlines()]


@pytest.fixture
def mmdb(tmp_path: Path) -> Path:
    return write_mmdb(
        tmp_path / "test.mmdb",
        {
            "198.51.100.0/24": ("SE", 64500, "Wire Test AB"),
            "203.0.113.0/24": ("NZ", 64501, "Web Test Ltd"),
        },
    )


def test_jsonl_flows_with_labels_names_and_counts(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path, mmdb: Path
) -> None:
    path = _capture(tmp_path, _wireguard_handshake() + _dns_then_http())
    res = _run(netwatch_cmd, repo_root, str(path), "--format", "jsonl", "--geoip-db", str(mmdb))
    records = _records(res)
    flows = {(r["transport"], r["dport"]): r for r in records if r["type"] == "flow"}
    assert set(flows) == {("udp", 51820), ("udp", 53), ("tcp", 80)}
    kinds = [r["type"] for r in records]
    assert kinds == sorted(kinds, key=lambda k: k != "flow"), "flows come before alerts"

    wg = flows[("udp", 51820)]
    assert (wg["app"], wg["category"], wg["vpn"]) == ("wireguard", "vpn", True)
    assert wg["confidence"] == "high"
    assert (wg["src"], wg["sport"], wg["dst"]) == (HOST, 45000, WG_PEER)
    assert (wg["packets_sent"], wg["packets_received"]) == (2, 1)
    assert wg["bytes_sent"] == 2 * 28 + 148 + 48 and wg["bytes_received"] == 28 + 92
    assert wg["first_seen"] == T0 and wg["last_seen"] == pytest.approx(T0 + 0.02)
    assert wg["remote"]["country"] == "SE" and wg["remote"]["as_org"] == "Wire Test AB"

    web = flows[("tcp", 80)]
    assert web["dns_name"] == "files.example.org"
    assert web["http_host"] == "files.example.org"
    assert web["vpn"] is False and web["state"] == "ESTABLISHED"
    assert (web["packets_sent"], web["packets_received"]) == (3, 2)
    assert web["remote"]["country"] == "NZ"
    assert flows[("udp", 53)]["app"] == "dns"


def test_inbound_when_a_global_address_initiates(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path
) -> None:
    outside = "8.8.4.4"  # only written into the file; nothing is sent anywhere
    pkts = [
        IP(src=outside, dst="10.1.2.3") / TCP(sport=55000, dport=22, flags="S"),
        IP(src="10.1.2.3", dst=outside) / TCP(sport=22, dport=55000, flags="SA"),
    ]
    (flow,) = _records(
        _run(netwatch_cmd, repo_root, str(_capture(tmp_path, pkts)), "--format", "jsonl")
    )
    assert flow["direction"] == "inbound"
    assert (flow["src"], flow["dport"]) == (outside, 22)
    # Seen from the local side: it received the SYN and sent the SYN+ACK.
    assert (flow["packets_sent"], flow["packets_received"]) == (1, 1)
    assert flow["remote"] is None or flow["remote"]["ip"] == outside


def test_table_is_readable(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path, mmdb: Path
) -> None:
    path = _capture(tmp_path, _wireguard_handshake())
    res = _run(netwatch_cmd, repo_root, str(path), "--geoip-db", str(mmdb))
    lines = res.stdout.splitlines()
    assert lines[0].split()[:3] == ["PROTO", "INITIATOR", "RESPONDER"]
    row = lines[1]
    assert f"{HOST}:45000" in row and f"{WG_PEER}:51820" in row
    assert "wireguard" in row and "yes" in row and "SE" in row
    # The label's confidence and the kinds of evidence it rests on have their own columns.
    head = lines[0].split()
    assert head[head.index("VPN") + 1 : head.index("VPN") + 3] == ["CONF", "BY"]
    assert " high " in row and "message" in row
    # An alert line names the flow's label, confidence and evidence kinds too.
    alerts = [line for line in lines if " vpn." in line]
    assert all("[label wireguard (high: message" in line for line in alerts)
    assert lines[-1] == "3 packets, 1 flows, 0 alerts" or lines[-1].startswith("3 packets, 1 flows")


def _one_line_failure(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 1, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("netwatch: ")
    return lines[0]


def test_missing_directory_and_foreign_files(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path
) -> None:
    assert "no such file" in _one_line_failure(
        _run(netwatch_cmd, repo_root, str(tmp_path / "nope.pcap"), check=False)
    )
    assert "no capture files" in _one_line_failure(
        _run(netwatch_cmd, repo_root, str(tmp_path), check=False)
    )
    text = tmp_path / "notes.txt"
    text.write_text("not a capture\n")
    res = _run(netwatch_cmd, repo_root, str(text), check=False)
    assert "not a pcap" in _one_line_failure(res) and res.stdout == ""


def test_unreadable_file(netwatch_cmd: list[str], repo_root: Path, tmp_path: Path) -> None:
    path = _capture(tmp_path, _wireguard_handshake())
    path.chmod(0)
    cmd = netwatch_cmd
    if os.geteuid() == 0:
        # Root reads any file through CAP_DAC_OVERRIDE: drop every capability (uid stays 0,
        # so the checkout and interpreter remain readable) and give the file to nobody.
        if shutil.which("setpriv") is None:
            pytest.skip("not installed: setpriv")
        os.chown(path, 65534, 65534)
        cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *netwatch_cmd]
    assert "permission denied" in _one_line_failure(_run(cmd, repo_root, str(path), check=False))


def _warning(res: subprocess.CompletedProcess[str], code: int = 0) -> str:
    assert res.returncode == code, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("netwatch: warning: "), res.stderr
    return lines[0]


def test_a_file_cut_short_is_read_as_far_as_it_goes_with_a_warning(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path
) -> None:
    path = _capture(tmp_path, _wireguard_handshake())
    path.write_bytes(path.read_bytes()[:-10])
    res = _run(netwatch_cmd, repo_root, str(path), "--format", "jsonl", check=False)
    assert "cut short inside packet record 3" in _warning(res)
    (flow,) = [r for r in _records(res) if r["type"] == "flow"]
    assert flow["packets_sent"] + flow["packets_received"] == 3  # the cut one's headers count


def test_a_file_cut_inside_its_first_record_is_not_rejected_whole(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path
) -> None:
    path = _capture(tmp_path, _wireguard_handshake()[:1])  # the 148-byte initiation
    path.write_bytes(path.read_bytes()[:-100])  # its IP and UDP headers are still there
    res = _run(netwatch_cmd, repo_root, str(path), "--format", "jsonl", check=False)
    assert "cut short inside packet record 1" in _warning(res)
    (flow,) = [r for r in _records(res) if r["type"] == "flow"]
    assert (flow["dst"], flow["dport"]) == (WG_PEER, 51820)
    # Only the record's own header left: nothing could be read, and the exit says so.
    data = path.read_bytes()
    path.write_bytes(data[: 24 + 16])
    res = _run(netwatch_cmd, repo_root, str(path), "--format", "jsonl", check=False)
    assert "nothing could be read" in _warning(res, code=1) and res.stdout == ""


def test_a_folder_of_captures_good_cut_and_foreign(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "captures"
    folder.mkdir()
    _capture(folder, _wireguard_handshake(), "a-wireguard.pcap")
    _capture(folder, _dns_then_http(), "b-web.pcapng")
    cut = _capture(folder, _wireguard_handshake(), "c-cut.pcap")
    cut.write_bytes(cut.read_bytes()[:-10])
    header = b"\xd4\xc3\xb2\xa1\x02\x00\x04\x00" + bytes(8) + b"\xff\xff\x00\x00"
    (folder / "d-dlt147.pcap").write_bytes(header + (147).to_bytes(4, "little"))
    (folder / "e-garbage.cap").write_bytes(os.urandom(300))
    (folder / "labels.jsonl").write_text("{}\n")  # not a capture name: not read
    res = _run(netwatch_cmd, repo_root, str(folder), "--format", "jsonl", check=False)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    errors = res.stderr.strip().splitlines()
    assert len(errors) == 3, res.stderr
    assert errors[0].startswith("netwatch: warning: ") and "c-cut.pcap" in errors[0]
    assert "d-dlt147.pcap: link type 147 (USER0) is not supported" in errors[1]
    assert "e-garbage.cap" in errors[2]
    flows = [r for r in _records(res) if r["type"] == "flow"]
    assert {Path(r["file"]).name for r in flows} == {
        "a-wireguard.pcap",
        "b-web.pcapng",
        "c-cut.pcap",
    }
    # Each file is its own analysis: the same handshake in two files is two flows.
    assert [r["app"] for r in flows if r["dport"] == 51820] == ["wireguard", "wireguard"]


def test_several_files_as_a_table_each_under_its_name(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path
) -> None:
    a = _capture(tmp_path, _wireguard_handshake(), "a.pcap")
    b = _capture(tmp_path, _dns_then_http(), "b.pcap")
    res = _run(netwatch_cmd, repo_root, str(a), str(b))
    heads = [line for line in res.stdout.splitlines() if line.startswith("==> ")]
    assert heads == [f"==> {a} <==", f"==> {b} <=="]
    assert res.stdout.count("PROTO") == 2


@pytest.mark.parametrize(
    "blob",
    [
        b"\xd4\xc3\xb2\xa1",  # magic only
        b"\xd4\xc3\xb2\xa1"
        + b"\x02\x00\x04\x00"
        + b"\x00" * 8
        + b"\xff\xff\x00\x00\x93\x00\x00\x00",
        b"\x0a\x0d\x0d\x0a" + os.urandom(64),
        os.urandom(200),
    ],
    ids=["magic-only", "link-type-147", "pcapng-garbage", "random"],
)
def test_corrupt_files_are_one_line(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path, blob: bytes
) -> None:
    path = tmp_path / "bad.pcap"
    path.write_bytes(blob)
    _one_line_failure(_run(netwatch_cmd, repo_root, str(path), check=False))


def test_bad_format_is_usage_error(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path
) -> None:
    res = _run(netwatch_cmd, repo_root, str(tmp_path / "x"), "--format", "xml", check=False)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1


def test_ui_without_a_terminal_is_one_line(
    netwatch_cmd: list[str], repo_root: Path, tmp_path: Path
) -> None:
    path = _capture(tmp_path, _wireguard_handshake())
    res = _run(netwatch_cmd, repo_root, str(path), "--ui", check=False)
    assert "terminal" in _one_line_failure(res)
