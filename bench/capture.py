"""Packet throughput: `analyze` on a large generated pcap, and live capture at rising rates.

    python bench/capture.py [--packets N] [--skip-live] [--rates 10000,20000,...]

Part 1 writes a pcap with struct (many TCP and UDP flows, realistic sizes, a first payload
per flow for the dissectors) and times each stage: header decoding with scapy against the
struct parser, reading the file, the flow table (also on the same packets as Linux cooked
frames that say which copy each is, as live capture gives them), the dissectors, and the whole
`netwatch analyze --format jsonl` command (with enrichment and rules) in a subprocess.

Part 2 (root only) builds a namespace lab (tests/netns.py, tag "cap"): a bounded UDP sender
in a peer namespace sends a fixed count at each rate over a veth pair; netwatch's capture
(socket thread + queue + flow table with dissectors) runs in the host namespace on the veth,
and `tcpdump -w /dev/null` runs there as the native reference. Loss = sent - counted.
Nothing is asserted; the tables are the result.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netwatch.sources.decode import PacketDecoder  # noqa: E402  # after the path fix-up

# ---------------------------------------------------------------- part 1: generated pcap

PIN_CAPTURE: list[str] = []
PIN_SENDER: list[str] = []
"""`taskset` prefixes (with --pin) so the sender and the capture do not share a core."""

_ETH = b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00"


def _ipv4(src: bytes, dst: bytes, proto: int, l4: bytes) -> bytes:
    return (
        struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), 0, 0x4000, 64, proto, 0, src, dst) + l4
    )


def _tcp(sport: int, dport: int, flags: int, payload: bytes) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 0x50, flags, 65535, 0, 0) + payload


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def server_flight() -> bytes:
    """A TLS 1.2 server's clear flight: ServerHello, Certificate (RSA-2048 leaf + CA), Done.

    The certificate is made here (public format, RFC 5246 §7.4.2) so `analyze` pays for what
    a real TLS 1.2 server makes it read: reassembly over two segments and one DER parse.
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.example")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=90))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("bench.example")]), False)
        .sign(key, hashes.SHA256())
    )
    leaf = cert.public_bytes(serialization.Encoding.DER)

    def msg(kind: int, body: bytes) -> bytes:
        return bytes([kind]) + len(body).to_bytes(3, "big") + body

    hello = msg(2, b"\x03\x03" + bytes(32) + b"\x00\xc0\x2f\x00\x00\x00")
    chain = b"".join(len(d).to_bytes(3, "big") + d for d in (leaf, leaf))
    flight = hello + msg(11, len(chain).to_bytes(3, "big") + chain) + msg(14, b"")
    return b"\x16\x03\x03" + struct.pack("!H", len(flight)) + flight


def write_pcap(path: Path, packets: int, flow_len: int = 50, cooked: bool = False) -> int:
    """Write `packets` frames in flows of `flow_len`, interleaved 64 flows at a time.

    A third of the flows are UDP; of the TCP flows half open with a ClientHello, answered by
    a TLS 1.2 server flight over two segments, and half with an HTTP request. `cooked`: as
    `tcpdump -i any` writes them (Linux cooked SLL2), each frame saying whether it left or
    arrived, as live capture gives them to the flow table (one copy each: this host's own).
    """
    rng = random.Random(7)
    hello = b"\x16\x03\x01\x00\x40\x01\x00\x00\x3c\x03\x03" + bytes(58)
    request = b"GET / HTTP/1.1\r\nHost: bench.example\r\n\r\n"
    flight = server_flight()
    body = bytes(rng.getrandbits(8) for _ in range(1400))
    ts = 1_700_000_000.0
    written = 0
    flow_id = 0
    with path.open("wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 276 if cooked else 1))
        while written < packets:
            group = []
            for _ in range(64):
                flow_id += 1
                client = bytes((10, (flow_id >> 16) & 255, (flow_id >> 8) & 255, flow_id & 255))
                server = bytes((203, 0, 113, flow_id % 200 + 1))
                tls = rng.random() >= 0.5
                group.append((flow_id % 3 == 0, tls, client, server, 1024 + flow_id % 60000))
            for i in range(flow_len):
                for is_udp, tls, client, server, sport in group:
                    out = i % 2 == 0
                    src, dst = (client, server) if out else (server, client)
                    ports = (sport, 443) if out else (443, sport)
                    if is_udp:
                        payload = (b"\x38" + bytes(40)) if i == 0 else body[: 100 + (i * 37) % 1200]
                        ip = _ipv4(src, dst, 17, _udp(*ports, payload))
                    else:
                        if i == 0:
                            seg = _tcp(*ports, 0x02, b"")
                        elif i == 2:
                            seg = _tcp(*ports, 0x18, hello if tls else request)
                        elif tls and i in (3, 7):
                            seg = _tcp(*ports, 0x18, flight[:1400] if i == 3 else flight[1400:])
                        elif i % 4 == 1:
                            seg = _tcp(*ports, 0x10, b"")
                        else:
                            seg = _tcp(*ports, 0x18, body[: 200 + (i * 53) % 1200])
                        ip = _ipv4(src, dst, 6, seg)
                    frame = (_SLL2_OUT if out else _SLL2_IN) + ip if cooked else _ETH + ip
                    ts += 0.00002
                    sec = int(ts)
                    fh.write(
                        struct.pack("<IIII", sec, int((ts - sec) * 1e6), len(frame), len(frame))
                    )
                    fh.write(frame)
                    written += 1
                    if written >= packets:
                        return written
    return written


_SLL2_OUT = struct.pack("!HHiHBB8s", 0x0800, 0, 2, 1, 4, 6, bytes(8))
_SLL2_IN = struct.pack("!HHiHBB8s", 0x0800, 0, 2, 1, 0, 6, bytes(8))
"""Linux cooked v2 headers: IPv4, interface 2, Ethernet, leaving (4) or arriving (0)."""


def _rate(n: int, seconds: float) -> str:
    return f"{n / seconds:,.0f}"


def bench_decode(path: Path, sample: int = 20_000) -> list[tuple[str, str, str]]:
    from scapy.layers.l2 import Ether

    from netwatch.sources.pcapfile import CaptureFile

    frames = []
    with CaptureFile(path) as cap:
        for _ts, _lt, data, _if in cap.frames_raw():
            frames.append(data)
            if len(frames) >= sample:
                break
    dec = PacketDecoder()
    t = time.perf_counter()
    for f in frames:
        dec.decode(1, f, 0.0)
    struct_s = time.perf_counter() - t
    t = time.perf_counter()
    for f in frames:
        p = Ether(f)
        p.payload.payload.payload  # noqa: B018  # touch the transport layer like the parser does
    scapy_s = time.perf_counter() - t
    return [
        (
            "scapy Ether(frame) dissection",
            _rate(len(frames), scapy_s),
            f"{scapy_s / len(frames) * 1e6:.1f}",
        ),
        (
            "struct parser (sources.decode)",
            _rate(len(frames), struct_s),
            f"{struct_s / len(frames) * 1e6:.1f}",
        ),
    ]


class _Timer:
    """Wall and CPU seconds of a block (CPU: this process, or its children for a command)."""

    def __init__(self, children: bool = False) -> None:
        self.children = children

    def _cpu(self) -> float:
        if self.children:
            ru = resource.getrusage(resource.RUSAGE_CHILDREN)
            return ru.ru_utime + ru.ru_stime
        return time.process_time()

    def __enter__(self) -> _Timer:
        self.wall0, self.cpu0 = time.perf_counter(), self._cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = self._cpu() - self.cpu0

    def row(self, name: str, n: int, extra: str = "") -> tuple[str, str, str, str]:
        return (name, _rate(n, self.cpu), _rate(n, self.wall), f"{self.cpu:.2f}{extra}")


def bench_stages(path: Path) -> list[tuple[str, str, str, str]]:
    from netwatch.flows.table import FlowTable
    from netwatch.pipeline.offline import OfflineAnalysis, default_inspector
    from netwatch.sources.pcapfile import CaptureFile

    rows = []
    with _Timer() as t:
        n = sum(1 for _ in CaptureFile(path).frames_raw())
    rows.append(t.row("read records only", n))
    with _Timer() as t:
        n = sum(1 for _ in CaptureFile(path))
    rows.append(t.row("read + decode (PacketMeta)", n))
    table = FlowTable()
    with _Timer() as t:
        for m in CaptureFile(path):
            table.ingest(m)
    rows.append(t.row(f"+ flow table ({table.stats().created:,} flows)", n))
    cooked = path.with_name("cooked.pcap")
    write_pcap(cooked, n, cooked=True)
    with _Timer() as t:
        sum(1 for _ in CaptureFile(cooked))
    rows.append(t.row("read + decode, Linux cooked (copy types, as live capture)", n))
    table = FlowTable()
    # One address of this host, as live capture hands the table (most flows then look
    # passing through: the judgement costs its most, once per direction).
    table.local = frozenset(m.src.ip for m in itertools.islice(CaptureFile(cooked), 1))
    with _Timer() as t:
        for m in CaptureFile(cooked):
            table.ingest(m)
    rows.append(
        t.row(f"+ flow table, counting each packet once ({table.stats().copies} copies)", n)
    )
    cooked.unlink()
    inspect, forget = default_inspector()
    run = OfflineAnalysis(inspect=inspect, forget=forget)
    with _Timer() as t:
        flows = sum(1 for _ in run.flows(CaptureFile(path)))
    rows.append(t.row(f"+ dissectors, streaming out ({flows:,} flows)", n))
    with _Timer(children=True) as t:
        res = subprocess.run(
            [sys.executable, "-m", "netwatch", "analyze", str(path), "--format", "jsonl"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    note = "" if res.returncode == 0 else f" (exit {res.returncode}: {res.stderr.strip()})"
    rows.append(
        t.row(
            f"`netwatch analyze --format jsonl` (enrich + rules, start-up included){note}",
            n,
            f"; peak RSS {rss:.0f} MiB",
        )
    )
    return rows


def _table(title: str, head: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print("| " + " | ".join(r) + " |")


# ---------------------------------------------------------------- part 2: live capture


def worker(interface: str) -> None:
    """Run netwatch's capture on `interface` until stdin says stop; print counts as JSON."""
    import select

    from netwatch.pipeline.capture_flows import CaptureFlows

    flows = CaptureFlows.open(interface=interface, bpf="udp port 9")
    print("ready", flush=True)
    while not select.select([sys.stdin], [], [], 0.02)[0]:
        flows.pump()
    flows.pump()
    st = flows.capture.stats()
    counted = flows.table.stats().packets
    flows.close()
    out = {"frames": st.frames, "kernel": st.kernel_drops, "queue": st.queue_drops}
    print(json.dumps({**out, "counted": counted}), flush=True)


def sender(dst: str, rate: int, count: int) -> None:
    """Send `count` 64-byte UDP datagrams to dst:9 at `rate` per second (bounded)."""
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    payload = b"\x00" * 64
    batch = max(1, rate // 1000)
    start = time.perf_counter()
    sent = 0
    while sent < count:
        for _ in range(min(batch, count - sent)):
            s.sendto(payload, (dst, 9))
            sent += 1
        due = start + sent / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.perf_counter() - start
    print(json.dumps({"sent": sent, "seconds": elapsed}), flush=True)


def _mac(lab: object, ns: str, ifname: str) -> str:
    res = lab.run(ns, ["ip", "-j", "link", "show", ifname])  # type: ignore[attr-defined]
    return str(json.loads(res.stdout)[0]["address"])


def _one_frame(path: Path, src_mac: str, dst_mac: str) -> Path:
    mac = bytes.fromhex(dst_mac.replace(":", "")) + bytes.fromhex(src_mac.replace(":", ""))
    ip = _ipv4(bytes((198, 51, 100, 50)), bytes((192, 0, 2, 1)), 17, _udp(40000, 9, bytes(64)))
    frame = mac + b"\x08\x00" + ip
    header = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    path.write_bytes(header + struct.pack("<IIII", 0, 0, len(frame), len(frame)) + frame)
    return path


def _send(lab: object, peer: object, frame: Path | None, rate: int, seconds: float) -> dict:
    """Send rate*seconds frames from the peer: tcpreplay when installed, else Python."""
    count = int(rate * seconds)
    if frame is not None:
        res = lab.run(  # type: ignore[attr-defined]
            peer.ns,  # type: ignore[attr-defined]
            [
                *PIN_SENDER,
                "tcpreplay",
                "-q",
                "-i",
                peer.peer_if,  # type: ignore[attr-defined]
                f"--pps={rate}",
                f"--pps-multi={max(1, rate // 5000)}",
                f"--loop={count}",
                str(frame),
            ],  # type: ignore[attr-defined]
            timeout=seconds * 10 + 30,
        )
        m = re.search(r"Actual: (\d+) packets .*? in ([\d.]+) seconds", res.stdout)
        if m is None:
            raise RuntimeError(f"tcpreplay said: {res.stdout} {res.stderr}")
        return {"sent": int(m.group(1)), "seconds": float(m.group(2))}
    script = str(Path(__file__).resolve())
    res = lab.run(  # type: ignore[attr-defined]
        peer.ns,  # type: ignore[attr-defined]
        [sys.executable, script, "_send", "192.0.2.1", str(rate), str(count)],
        timeout=seconds * 10 + 30,
        cwd=ROOT,
    )
    return dict(json.loads(res.stdout.strip().splitlines()[-1]))


def bench_live(rates: list[int], seconds: float) -> None:
    from tests.netns import Lab

    rows: list[tuple[str, ...]] = []
    best_nw = best_td = 0.0
    with Lab("cap") as lab, tempfile.TemporaryDirectory() as tmp:
        peer = lab.add_peer("198.51.100.50")
        frame = None
        if shutil.which("tcpreplay"):
            src, dst = _mac(lab, peer.ns, peer.peer_if), _mac(lab, lab.host, peer.host_if)
            frame = _one_frame(Path(tmp) / "one.pcap", src, dst)
        sender_name = "tcpreplay" if frame else "a Python loop"
        for rate in rates:
            proc = subprocess.Popen(
                lab.cmd(
                    lab.host,
                    [
                        *PIN_CAPTURE,
                        sys.executable,
                        str(Path(__file__).resolve()),
                        "_worker",
                        peer.host_if,
                    ],
                ),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=ROOT,
            )
            if proc.stdout is None or proc.stdin is None:
                raise RuntimeError("no pipe")
            proc.stdout.readline()  # "ready"
            sent = _send(lab, peer, frame, rate, seconds)
            time.sleep(0.5)
            proc.stdin.write("stop\n")
            proc.stdin.flush()
            got = json.loads(proc.stdout.readline())
            proc.wait(30)
            td = subprocess.Popen(
                lab.cmd(
                    lab.host,
                    [
                        *PIN_CAPTURE,
                        "tcpdump",
                        "-i",
                        peer.host_if,
                        "-w",
                        "/dev/null",
                        "-n",
                        "udp port 9",
                    ],
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            if td.stderr is None:
                raise RuntimeError("no pipe")
            while "listening on" not in td.stderr.readline():
                pass
            sent_td = _send(lab, peer, frame, rate, seconds)
            time.sleep(2.0)  # tcpdump's ring hands over a block on a timeout
            td.send_signal(signal.SIGINT)
            err = td.communicate(timeout=30)[1]
            captured = int(next(x for x in err.splitlines() if "captured" in x).split()[0])
            dropped = int(next(x for x in err.splitlines() if "dropped by kernel" in x).split()[0])
            achieved = sent["sent"] / sent["seconds"]
            lost = sent["sent"] - got["counted"]
            lost_td = sent_td["sent"] - captured
            if lost == 0:
                best_nw = max(best_nw, achieved)
            if lost_td == 0:
                best_td = max(best_td, sent_td["sent"] / sent_td["seconds"])
            rows.append(
                (
                    f"{rate:,}",
                    f"{achieved:,.0f}",
                    f"{sent['sent']:,}",
                    f"{got['counted']:,}",
                    f"{lost:,}",
                    f"{got['kernel']:,} / {got['queue']:,}",
                    f"{captured:,}",
                    f"{lost_td:,}",
                    f"{dropped:,}",
                )
            )
    _table(
        f"Live capture on a veth pair, {seconds:g} s per rate, 64-byte UDP "
        f"sent by {sender_name} (tcpdump -w /dev/null as reference)",
        (
            "target pkt/s",
            "sent pkt/s",
            "sent",
            "netwatch counted",
            "netwatch lost",
            "kernel / queue drops",
            "tcpdump captured",
            "tcpdump lost",
            "tcpdump kernel drops",
        ),
        rows,
    )
    print(
        f"\nHighest rate held without loss: netwatch {best_nw:,.0f} pkt/s, "
        f"tcpdump {best_td:,.0f} pkt/s"
    )


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        worker(sys.argv[2])
        return 0
    if len(sys.argv) > 1 and sys.argv[1] == "_send":
        sender(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--skip-live", action="store_true")
    ap.add_argument("--rates", default="10000,25000,50000,100000,200000")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument(
        "--pin", action="store_true", help="capture on CPU 0, sender on CPU 1 (taskset)"
    )
    args = ap.parse_args()
    if args.pin and shutil.which("taskset"):
        PIN_CAPTURE[:] = ["taskset", "-c", "0"]
        PIN_SENDER[:] = ["taskset", "-c", "1"]
    with tempfile.TemporaryDirectory(prefix="netwatch-bench-") as tmp:
        path = Path(tmp) / "bench.pcap"
        t = time.perf_counter()
        n = write_pcap(path, args.packets)
        size = path.stat().st_size / 1e6
        took = time.perf_counter() - t
        print(f"generated {n:,} packets ({size:,.0f} MB) with struct in {took:.1f} s")
        _table("Header decoding, 20,000 frames", ("parser", "pkt/s", "us/pkt"), bench_decode(path))
        _table(
            f"analyze stages on {n:,} packets (2 shared cores: CPU time is the fair figure)",
            ("stage", "pkt/s per CPU second", "pkt/s wall clock", "CPU seconds"),
            bench_stages(path),
        )
    if args.skip_live:
        return 0
    if os.geteuid() != 0:
        print("\nlive capture skipped: needs root (namespaces, packet sockets)")
        return 0
    bench_live([int(r) for r in args.rates.split(",")], args.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
