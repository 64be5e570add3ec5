"""Fuzz every dissector and every file loader: N mutated inputs each, failures by kind.

A seeded mutational fuzzer: each target has a few valid seeds (real payloads, a saved list
history, the README's config, the bundled rules, a small mmdb, a store, a capture, a
recording), and every case is a seed with one to four stacked mutations (bit flips, random
and boundary bytes, inserted or deleted runs, repeated chunks, cuts, splices of two seeds,
and tokens that break values: NaN, 1e300, -1, 65536, invalid UTF-8, stray quotes). Mutating
valid input reaches deep into a parser, which random bytes rarely do.

The contract checked: a dissector never raises; a file loader either loads or raises its
documented error (`DataFileError` and subclasses), whose text is one line naming the file.
Anything else is a failure, counted by exception type with the first input that raised it.
Files are written to a private temp dir (mode 0700, files 0600). Outside the default test
run (pytest collects `tests/` only).

    python bench/fuzz.py [--cases 100000] [--only SUBSTRING] [--seed 1]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import multiprocessing
import os
import random
import re
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# ruff: noqa: E402 - the imports below need the path set-up above
from netwatch import codec
from netwatch.config import load_config
from netwatch.detect.loader import bundled_rule_files, check_rule_files
from netwatch.dissect import (
    Dissector,
    anyconnect,
    certificate,
    dns,
    http,
    ipsec,
    openvpn,
    quic,
    softether,
    tailscale,
    tls,
    tor,
    tunnels,
    wireguard,
)
from netwatch.dissect.names import classify_host
from netwatch.enrich.geo import GeoDatabase, GeoLookup, Origin
from netwatch.enrich.lists import (
    History,
    HistoryMatcher,
    history_path,
    load_history,
    parse_tor,
    relay_entries,
    save_history,
)
from netwatch.enrich.provider_formats import PARSERS
from netwatch.enrich.ranges import BUNDLED, RangeMatcher, load_ranges, range_path
from netwatch.enrich.rdap_cache import OwnerCache
from netwatch.enrich.vpngate_list import Relay, format_vpngate, parse_vpngate
from netwatch.errors import DataFileError, NetwatchError
from netwatch.feed import read_recording
from netwatch.model import Endpoint, FlowKey, Owner, PacketContext, Transport, parse_ip
from netwatch.sources.pcapfile import CaptureFile
from netwatch.store import AlertQuery, Store, read_alerts

REPO = Path(__file__).resolve().parent.parent
T = TypeVar("T")
T0 = 1_700_000_000.0
TOKENS = [
    b"NaN", b"Infinity", b"-Infinity", b"1e300", b"-1", b"0", b"65536", b"99999999999999999999",
    b"\xff", b"\xfe\xff", b"\xc3", b"\x00", b'"', b"\\", b"null", b"true", b"[]", b"{}",
    b"[[[[[[[[", b"\r\n", b"::", b"300.1.2.3", b"%", b"*", b"#",
]  # fmt: skip
"""Fragments that turn a valid value into a damaged one (spliced in at random places)."""


# ---------------------------------------------------------------- mutation


def mutate(rng: random.Random, data: bytes, seeds: Sequence[bytes]) -> bytes:
    """One to four stacked mutations of `data` (a seed)."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(9)
        at = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            i = min(at, len(buf) - 1)
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            i = min(at, len(buf) - 1)
            buf[i] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, rng.randrange(256)))
        elif op == 2:
            buf[at:at] = rng.randbytes(rng.randint(1, 8))
        elif op == 3:
            del buf[at : at + rng.randint(1, 64)]
        elif op == 4:
            chunk = buf[at : at + rng.randint(1, 32)]
            buf[at:at] = chunk * rng.randint(1, 4)
        elif op == 5:
            del buf[at:]
        elif op == 6:
            other = rng.choice(seeds)
            start = rng.randrange(len(other) + 1)
            buf[at:] = other[start:]
        elif op == 7:
            token = rng.choice(TOKENS)
            buf[at : at + rng.randint(0, len(token))] = token
        else:
            _replace_number(rng, buf)
    return bytes(buf)


_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def _replace_number(rng: random.Random, buf: bytearray) -> None:
    """Swap one number in text for a boundary value (the damage range checks must catch)."""
    found = list(_NUMBER.finditer(buf[:4096]))
    if found:
        m = rng.choice(found)
        buf[m.start() : m.end()] = rng.choice(TOKENS[:8])


# ---------------------------------------------------------------- the driver


@dataclass
class Target:
    """What to fuzz: seeds, a function of one input, the errors it may document."""

    name: str
    seeds: Callable[[Path], list[bytes]]
    run: Callable[[bytes, Path], None]
    """Takes the input and a private scratch dir (for loaders that read a file)."""
    allowed: tuple[type[Exception], ...] = ()


@dataclass
class Outcome:
    """One target's tally."""

    cases: int = 0
    seconds: float = 0.0
    slowest: float = 0.0
    failures: dict[str, tuple[int, bytes, str]] = field(default_factory=dict)
    """exception type -> (count, first input, where it was raised)."""

    def add(self, other: Outcome) -> None:
        """Fold another child's tally into this one."""
        self.cases += other.cases
        self.seconds += other.seconds
        self.slowest = max(self.slowest, other.slowest)
        for kind, (count, example, where) in other.failures.items():
            mine = self.failures.get(kind)
            self.failures[kind] = (
                count + (mine[0] if mine else 0),
                *(mine or (0, example, where))[1:],
            )


def inputs(seeds: Sequence[bytes], cases: int, seed: int) -> Iterator[bytes]:
    """The cases of one target: the seeds, then mutations (the same for the same seed)."""
    rng = random.Random(seed)
    for i in range(cases):
        yield seeds[i % len(seeds)] if i < len(seeds) else mutate(rng, rng.choice(seeds), seeds)


REPORT_EVERY = 2000
"""Cases between tallies sent to the parent (what a crash of the child would lose)."""


def drive(target: Target, cases: Iterator[bytes], first: int, scratch: Path, at: Any) -> Any:
    """Run the cases from index `first` in this (child) process; yield the tally now and then.

    `at.value` is the index of the case running, so the parent can name the input that
    killed the child (a crash in a C extension is no exception to catch).
    """
    out = Outcome()
    for i, data in enumerate(cases):
        if i < first:
            continue
        at.value = i
        started = time.perf_counter()
        try:
            target.run(data, scratch)
        except target.allowed:
            pass
        except Exception as exc:  # noqa: BLE001 - every other exception is the finding
            kind = type(exc).__name__
            count, example, where = out.failures.get(kind, (0, data, _where(exc)))
            out.failures[kind] = (count + 1, example, where)
        took = time.perf_counter() - started
        out.seconds += took
        out.slowest = max(out.slowest, took)
        out.cases += 1
        if out.cases % REPORT_EVERY == 0:
            yield out
    yield out


def _child(target: Target, args: tuple[int, int, int], seeds: list[bytes] | None, scratch: Path,
           conn: Any, at: Any) -> None:  # fmt: skip
    cases, seed, first = args
    with contextlib.redirect_stderr(io.StringIO()):  # loaders may log; keep the table
        seeds = seeds or target.seeds(scratch)
        conn.send(seeds)
        for tally in drive(target, inputs(seeds, cases, seed), first, scratch, at):
            conn.send(tally)


def run_target(target: Target, cases: int, seed: int) -> Outcome:
    """Fuzz one target in forked children; a child that dies names its input and the rest
    of the cases run in a new child."""
    fork = multiprocessing.get_context("fork")
    total, first, seeds = Outcome(), 0, None
    while first < cases:
        # mode 0700; in memory when possible (SQLite's fsyncs would otherwise set the pace)
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
        scratch = Path(tempfile.mkdtemp(prefix="nwfuzz-", dir=shm))
        receive, send = fork.Pipe(duplex=False)
        at = fork.Value("q", first, lock=False)
        child = fork.Process(
            target=_child, args=(target, (cases, seed, first), seeds, scratch, send, at)
        )
        child.start()
        send.close()
        tally = Outcome()
        with contextlib.suppress(EOFError):
            seeds = receive.recv()
            while True:
                tally = receive.recv()
        child.join()
        shutil.rmtree(scratch, ignore_errors=True)
        total.add(tally)
        if child.exitcode == 0 or seeds is None:
            break
        crashed = int(at.value)
        data = next(itertools.islice(inputs(seeds, cases, seed), crashed, None))
        kind = f"crash (exit {child.exitcode})"
        count, example, where = total.failures.get(kind, (0, data, f"case {crashed}"))
        total.failures[kind] = (count + 1, example, where)
        total.cases += crashed + 1 - first - tally.cases
        first = crashed + 1
    return total


def _where(exc: Exception) -> str:
    frame = traceback.extract_tb(exc.__traceback__)[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}: {str(exc)[:100]}"


def _write(scratch: Path, name: str, data: bytes) -> Path:
    """Write `data` to a fresh private file (0600) in the scratch dir."""
    path = scratch / name
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


class LocationMissingError(AssertionError):
    """A loader's error did not name its file on every line."""


def _one_line_naming(text: str, name: str) -> None:
    """One line per problem (config and rules report each), every one naming the file."""
    if not all(name in line for line in text.splitlines() or [""]):
        raise LocationMissingError(text[:200])


def _loader(load: Callable[[Path], object], name: str) -> Callable[[bytes, Path], None]:
    """A file target: write the input, load it; its DataFileError must name the file."""

    def run(data: bytes, scratch: Path) -> None:
        path = _write(scratch, name, data)
        try:
            load(path)
        except NetwatchError as exc:
            _one_line_naming(str(exc), str(path))
            raise

    return run


# ---------------------------------------------------------------- dissector targets


def _payload_seeds(_: Path) -> list[bytes]:
    import dissect as dissect_bench  # bench/dissect.py: realistic TLS/QUIC/DNS/HTTP/VPN flows

    payloads = [p for _, p in dissect_bench.build(60, 4) if p]
    protocols = [
        b"\x00\x00\x00\x00\x00\x00\x00\x01" + bytes(8) + b"\x21\x20\x22\x08" + bytes(4)
        + b"\x00\x00\x00\x1c",  # IKEv2 SA_INIT header
        b"\x00\x00\x10\x01" + bytes(16),  # ESP
        b"\xc8\x02\x00\x14\x00\x00\x00\x00\x00\x00\x00\x00",  # L2TP control
        b"\x00\x9c\x00\x01\x1a\x2b\x3c\x4d\x00\x01\x00\x00" + bytes(144),  # PPTP start
        b"\x30\x01\x88\x0b\x00\x10\x00\x00",  # GRE (enhanced, PPP)
        b"\x00\x00\x00\x03\x00\x00\x00\x07opcode\x00\x00\x00\x02\x00\x00\x00\x01",  # SoftEther
        b"\x0d" + bytes(8) + b"Q043" + bytes(40),  # gQUIC
        b"0 alice 17 0 2\n",  # tinc
        b"GET / HTTP/1.1\r\nHost: www.example.com\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
        "TS💬".encode() + bytes(56) + bytes(64),  # Tailscale DISCO
        b"CONNECT /CSCOSSLC/tunnel HTTP/1.1\r\nX-CSTP-MTU: 1399\r\nX-DTLS-Port: 443\r\n\r\n",
        b"\x16\xfe\xff\x00\x00" + bytes(6) + b"\x00\x04\x01\x00\x00\x00",  # DTLS 1.0 hello
        b"\x50" + bytes(8) + b"\x0f\x00\x00\x01\x69\x2d\x00\x00" + bytes(318)
        + b"\x01\x2b",  # OpenVPN 2.6 tls-crypt-v2 client reset with its WKc length
    ]  # fmt: skip
    return payloads[::7] + protocols


def _certificate_seeds(scratch: Path) -> list[bytes]:
    import capture as capture_bench  # bench/capture.py: a TLS 1.2 server flight with a leaf

    flight = capture_bench.server_flight()
    return [flight, flight[:1400], *_payload_seeds(scratch)[:8]]


def _text_names(data: bytes) -> None:
    text = data.decode("latin-1")
    tor.tor_like_sni(text)
    classify_host(text)


def _quic(data: bytes) -> None:
    quic.parse_gquic(data)
    header = quic.parse_long_header(data)
    if header is not None and header.is_initial and quic.known_version(header.version):
        quic.decrypt_initial(data, header, quic.InitialKeys.derive(header.version, header.dcid))
    quic.CryptoStream().add_frames(data)


def _openvpn(data: bytes) -> None:
    openvpn.frame(data, tcp=True)
    openvpn.frame(data, tcp=False)
    openvpn.reset_opcode(data)  # (reset_layout is its helper: only for reset-sized packets)
    if len(data) > 9:
        openvpn.reset_layout(data)
    tracker = openvpn.OpenVpnTracker(tcp=False)
    for i in range(3):
        tracker.feed(i % 2 == 0, i, data)


def _magic(data: bytes) -> None:
    tailscale.disco_sender(data)
    anyconnect.dtls_record(data)
    request = http.parse_request(data)
    if request is not None:
        anyconnect.cstp_label(request.method, request.path, request.line, request.cstp_headers)


def _wireguard(data: bytes) -> None:
    wireguard.message_type(data)
    tracker = wireguard.WireGuardTracker()
    tracker.feed(True, data)
    tracker.feed(False, data)


_KEYS = [
    FlowKey(t, Endpoint(parse_ip("192.0.2.10"), 40000 + i), Endpoint(parse_ip(ip), port))
    for i, (t, ip, port) in enumerate(
        (t, ip, port)
        for t in (Transport.TCP, Transport.UDP)
        for ip in ("198.51.100.7", "2001:db8::7")
        for port in (53, 80, 443, 500, 1194, 1701, 4500, 5555, 9001, 41641, 51820)
    )
]
_DISSECTOR = Dissector(max_flows=32)
_INDEX: dict[tuple[FlowKey, bool], int] = {}


def _inspect(data: bytes) -> None:
    """Feed the case into one long-lived Dissector (its flow state is fuzzed too)."""
    key = _KEYS[len(data) % len(_KEYS)]
    side = data[:1] < b"\x80"
    index = _INDEX.get((key, side), 0)
    _INDEX[(key, side)] = (index + 1) % 40
    _DISSECTOR.inspect(PacketContext(key, side, index, T0), data)


def _pure(fn: Callable[[bytes], object]) -> Callable[[bytes, Path], None]:
    def run(data: bytes, _scratch: Path) -> None:
        fn(data)

    return run


DISSECTORS = [
    Target("dissect.dns", _payload_seeds, _pure(lambda d: (dns.parse_dns(d), dns.read_name(d, 0)))),
    Target(
        "dissect.tls",
        _payload_seeds,
        _pure(
            lambda d: (
                tls.parse_client_hello_records(d),
                tls.parse_client_hello(d[4:]),
                tls.parse_handshake_stream(d[5:]),
            )
        ),
    ),
    Target(
        "dissect.certificate",
        _certificate_seeds,
        _pure(lambda d: (certificate.server_certificate(d), certificate.leaf_names(d[5:]))),
    ),
    Target(
        "dissect.http",
        _payload_seeds,
        _pure(lambda d: (http.parse_request(d), http.response_body_prefix(d))),
    ),
    Target(
        "dissect.ipsec",
        _payload_seeds,
        _pure(
            lambda d: (
                ipsec.ike_exchange(d),
                ipsec.udp_label(d, (500, 4500)),
                ipsec.esp_label(d),
                ipsec.ah_label(d),
            )
        ),
    ),
    Target(
        "dissect.tunnels",
        _payload_seeds,
        _pure(
            lambda d: (
                tunnels.l2tp_label(d),
                tunnels.pptp_label(d),
                tunnels.gre_label(d),
                tunnels.tinc_id(d),
            )
        ),
    ),
    Target(
        "dissect.softether",
        _payload_seeds,
        _pure(
            lambda d: (softether.parse_pack(d), softether.natt_label(d), softether.azure_label(d))
        ),
    ),
    Target("dissect.openvpn", _payload_seeds, _pure(_openvpn)),
    Target("dissect.wireguard", _payload_seeds, _pure(_wireguard)),
    Target("dissect.magic", _payload_seeds, _pure(_magic)),
    Target("dissect.quic", _payload_seeds, _pure(_quic)),
    Target("dissect.names+tor", _payload_seeds, _pure(_text_names)),
    Target("dissect.Dissector.inspect", _payload_seeds, _pure(_inspect)),
]


# ---------------------------------------------------------------- file loader targets

RELAYS = [
    Relay("vpn1", parse_ip("203.0.113.7"), "JP", 10, 3, ports=(("tcp", 1433),)),
    Relay("vpn2", parse_ip("2001:db8::2"), None, 1, 1, ports=(("udp", 1195), ("tcp", 443))),
    Relay("vpn3", parse_ip("127.0.0.1"), "KR", 5, 0, ports=(("udp", 1194),)),
]


def _history_seeds(scratch: Path) -> list[bytes]:
    history = History("vpngate", {}).merge(relay_entries(RELAYS), T0, "https://x/api/iphone/")
    later = history.merge(relay_entries(RELAYS[:1]), T0 + 86400, "u")
    base = scratch / "seed-history"
    return [save_history(h, base).read_bytes() for h in (history, later)]


def _stored(path: Path, data: bytes, load: Callable[[], T]) -> T:
    """Write `data` as a list file at `path` and load it: damage must be one line naming it."""
    path.parent.mkdir(exist_ok=True)
    _write(path.parent, path.name, data)
    try:
        return load()
    except DataFileError as exc:
        _one_line_naming(str(exc), str(path))
        raise


def _load_history(data: bytes, scratch: Path) -> None:
    history = _stored(
        history_path("vpngate", scratch), data, partial(load_history, "vpngate", scratch)
    )
    matcher = HistoryMatcher(history)
    for ip in history.entries:  # what the daemon does on every tick with traffic to it
        matcher.match(ip, 443)


def _vpngate_seeds(_: Path) -> list[bytes]:
    return [format_vpngate(RELAYS).encode(), format_vpngate(RELAYS[:1]).encode()]


def _tor_seeds(_: Path) -> list[bytes]:
    consensus = (
        b"r relay1 AAAA BBBB 2026-11-01 10:00:00 192.0.2.9 9001 0\n"
        b"a [2001:db8::9]:9001\ns Fast Running Valid\n"
        b"r relay2 CCCC DDDD 2026-11-01 10:00:00 198.51.100.9 443 80\n"
    )
    onionoo = (
        b'{"version":"8.0","relays":[{"or_addresses":["192.0.2.9:9001","[2001:db8::9]:9001"],'
        b'"exit_addresses":["198.51.100.9"]},{"or_addresses":["203.0.113.5:443"]}]}'
    )
    exits = b"ExitNode ABC\nPublished 2026-11-01 10:00:00\nExitAddress 192.0.2.77 2026-11-01\n"
    return [consensus, onionoo, exits, b"192.0.2.1\n198.51.100.2:443\n"]


def _parse_list(parse: Callable[[bytes, str], object]) -> Callable[[bytes, Path], None]:
    def run(data: bytes, _scratch: Path) -> None:
        try:
            parse(data, "fuzzed list")
        except DataFileError as exc:
            _one_line_naming(str(exc), "fuzzed list")
            raise

    return run


def _config_seeds(_: Path) -> list[bytes]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```toml\n(.*?)```", readme, re.S)
    configs = [b.encode() for b in blocks if "[policy]" in b or "[daemon]" in b]
    return [*configs, "\n".join(b.decode() for b in configs).encode()]


def _rules_seeds(_: Path) -> list[bytes]:
    return [p.read_bytes() for p in bundled_rule_files()]


def _check_rules(data: bytes, scratch: Path) -> None:
    path = _write(scratch, "rules.toml", data)
    _, problems = check_rule_files([path])
    for problem in problems:  # one located line each
        _one_line_naming(str(problem), str(path))


def _mmdb_seeds(scratch: Path) -> list[bytes]:
    from tests.mmdb import write_mmdb

    nets = {
        "8.8.8.0/24": ("US", 15169, "Google LLC"),
        "90.189.128.0/17": ("RU", 12389, "Rostelecom"),
        "2001:4860::/32": ("US", 15169, "Google LLC"),
    }
    return [write_mmdb(scratch / "seed.mmdb", nets).read_bytes()]


PROBES = [parse_ip(ip) for ip in ("8.8.8.8", "90.189.249.23", "2001:4860:4860::8888", "1.1.1.1")]


def _open_mmdb(path: Path) -> None:
    db = GeoDatabase.open(path, Origin.EXPLICIT)
    try:
        lookup = GeoLookup([db])
        for ip in PROBES:
            lookup.lookup(ip)
    finally:
        db.close()


def _rdap_seeds(scratch: Path) -> list[bytes]:
    path = scratch / "seed-rdap.sqlite3"
    cache = OwnerCache.open(path, lambda: T0)
    assert cache is not None  # noqa: S101 - a fresh file in our own dir
    cache.put(PROBES[0], Owner("ok", name="GOGL", cidr="8.8.8.0/24", abuse_emails=("a@b",)))
    cache.put(PROBES[1], Owner("unknown", reason="no record"))
    cache.close()
    return [path.read_bytes()]


def _open_rdap(data: bytes, scratch: Path) -> None:
    for old in scratch.glob("rdap.sqlite3*"):
        old.unlink()
    path = _write(scratch, "rdap.sqlite3", data)
    cache = OwnerCache.open(path, lambda: T0)
    if cache is None:
        return
    try:
        for ip in PROBES:
            cache.get(ip)
        cache.put(PROBES[3], Owner("ok", name="X"))
    finally:
        cache.close()


def _store_seeds(scratch: Path) -> list[bytes]:
    sys.path.insert(0, str(REPO))
    from tests.builders import make_alert, make_flow

    path = scratch / "seed.db"
    store = Store(path)
    store.save_alerts([make_alert()], T0)
    store.save_flows([(make_flow(), T0, T0 + 1)])
    store.close()
    return [path.read_bytes()]


def _open_store(path: Path) -> None:
    for extra in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(FileNotFoundError):
            extra.unlink()
    list(read_alerts(path, AlertQuery()))
    store = Store(path)
    store.close()


def _capture_seeds(scratch: Path) -> list[bytes]:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import Ether
    from scapy.packet import Raw
    from scapy.utils import wrpcap, wrpcapng

    frames = []
    for i, p in enumerate(_payload_seeds(scratch)[:20]):
        l4 = UDP(sport=40000, dport=443) if i % 2 else TCP(sport=40000, dport=443, flags="PA")
        frame = Ether() / IP(src="192.0.2.1", dst="198.51.100.7") / l4 / Raw(p[:600])
        frame.time = T0 + i
        frames.append(frame)
    out = []
    for write, name in ((wrpcap, "seed.pcap"), (wrpcapng, "seed.pcapng")):
        write(str(scratch / name), frames)
        out.append((scratch / name).read_bytes())
    return out


def _read_capture(path: Path) -> None:
    with CaptureFile(path) as capture:
        for _ in capture:
            pass


def _recording_seeds(_: Path) -> list[bytes]:
    sys.path.insert(0, str(REPO))
    from netwatch.stream import StreamEncoder
    from tests.builders import make_alert, make_flow, make_snapshot

    snaps = [
        make_snapshot(i, flows=(make_flow(bytes_sent=i),), alerts=(make_alert(),)) for i in (1, 2)
    ]
    encoder = StreamEncoder()
    stream = b"".join(codec.frame(encoder.encode(s)) for s in snaps)  # what `record` writes
    old = "".join(codec.dumps(s) + "\n" for s in snaps).encode()  # schema 1, still read
    return [stream, old]


def _ranges_seeds(_: Path) -> list[bytes]:
    return [BUNDLED.read_bytes()]


def _load_ranges(data: bytes, scratch: Path) -> None:
    found = _stored(range_path("mullvad", scratch), data, partial(load_ranges, "mullvad", scratch))
    matcher = RangeMatcher([found] if found else [])
    for r in found.ranges if found else ():  # what the enricher does for traffic to it
        matcher.match(r.network.network_address, 443)
        matcher.label(r.network.network_address, 443, Transport.UDP)


PROVIDER_SEEDS = {
    "mullvad": b'[{"hostname":"se-got-wg-001","type":"wireguard","ipv4_addr_in":"198.51.100.7",'
    b'"ipv6_addr_in":"2001:db8:7::1"}]',
    "protonvpn": b'{"LogicalServers":[{"Name":"CH#1","Servers":[{"EntryIP":"203.0.113.10",'
    b'"ExitIP":"203.0.113.11"}]}]}',
    "nordvpn": b'[{"hostname":"de1.nordvpn.com","station":"192.0.2.21",'
    b'"ips":[{"ip":{"ip":"192.0.2.22","version":4}}]}]',
    "icloud-private-relay": b"192.0.2.128/25,US,US-CA,Los Angeles,\n2001:db8:1200::/40,DE,,,\n",
}


FILES = [
    Target("file.list_history", _history_seeds, _load_history, (DataFileError,)),
    Target("file.vpngate_list", _vpngate_seeds, _parse_list(parse_vpngate), (DataFileError,)),
    Target("file.tor_list", _tor_seeds, _parse_list(parse_tor), (DataFileError,)),
    Target("file.provider_ranges", _ranges_seeds, _load_ranges, (DataFileError,)),
    *(
        Target(
            f"file.{name}_list",
            lambda _s, seed=PROVIDER_SEEDS[name]: [seed],
            _parse_list(parse),
            (DataFileError,),
        )
        for name, parse in PARSERS.items()
    ),
    Target("file.config", _config_seeds, _loader(load_config, "config.toml"), (NetwatchError,)),
    Target("file.rules", _rules_seeds, _check_rules),
    Target("file.mmdb", _mmdb_seeds, _loader(_open_mmdb, "geo.mmdb"), (DataFileError,)),
    Target("file.rdap_cache", _rdap_seeds, _open_rdap),
    Target("file.store", _store_seeds, _loader(_open_store, "netwatch.db"), (DataFileError,)),
    Target("file.pcap", _capture_seeds, _loader(_read_capture, "capture"), (DataFileError,)),
    Target(
        "file.recording", _recording_seeds, _loader(read_recording, "rec.jsonl"), (DataFileError,)
    ),
]
TARGETS = DISSECTORS + FILES


# ---------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000, help="cases per target")
    parser.add_argument("--only", default="", help="run the targets whose name contains this")
    parser.add_argument("--seed", type=int, default=1, help="random seed (runs are repeatable)")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/dissect.py for seeds
    header = f"{'target':28} {'cases':>8} {'cases/s':>9} {'slowest':>9}  failures"
    print(header)
    print("-" * len(header))
    failed = 0
    for target in (t for t in TARGETS if args.only in t.name):
        out = run_target(target, args.cases, args.seed)
        rate = out.cases / out.seconds if out.seconds else float("inf")
        found = "; ".join(
            f"{kind} x{count} ({where}) first: {first[:60]!r}"
            for kind, (count, first, where) in out.failures.items()
        )
        failed += sum(count for count, _, _ in out.failures.values())
        line = f"{target.name:28} {out.cases:>8} {rate:>9.0f} {out.slowest * 1e3:>7.1f}ms"
        print(f"{line}  {found or 0}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
