"""VPN Gate and Tor relay lists: rolling history on disk, Tor formats, and list matchers.

One fetched VPN Gate list names only ~100 of thousands of relays, so every fetch is merged
into a rolling history (address -> ports, host names, country, first/last seen), kept for
`KEEP_DAYS`, under `paths.data_dir()/lists/`. Tor relay data (consensus `r` lines, an
Onionoo details document, or an exit list) is kept the same way. `HistoryMatcher` implements
the enricher's `ListMatcher` protocol over a history. Nothing here fetches: `netwatch lists
update` does, on request only.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from netwatch import files, paths
from netwatch.clock import LATEST
from netwatch.enrich.vpngate_list import ListFormatError, Relay
from netwatch.errors import DataFileError, Location
from netwatch.model import IPAddress, ListHit, parse_ip

T = TypeVar("T")
KEEP_DAYS = 30
"""Addresses not seen in a fetch for this long are forgotten (relays get re-assigned)."""
LISTS = ("vpngate", "tor")
SCHEMA = 1


@dataclass(frozen=True, slots=True)
class Entry:
    """One address in a list's history."""

    ip: IPAddress
    first_seen: float
    last_seen: float
    ports: tuple[tuple[str, int], ...] = ()
    names: tuple[str, ...] = ()
    country: str | None = None
    exit: bool = False


@dataclass(frozen=True, slots=True)
class History:
    """A list's rolling history and when it was last updated."""

    name: str
    entries: dict[IPAddress, Entry]
    updated: float | None = None
    source: str | None = None

    def merge(self, fresh: Iterable[Entry], now: float, source: str) -> History:
        """Add one fetch's entries (first_seen kept, last_seen = now) and forget old ones."""
        entries = dict(self.entries)
        for e in fresh:
            old = entries.get(e.ip)
            if old is None:
                entries[e.ip] = replace(e, first_seen=now, last_seen=now)
                continue
            entries[e.ip] = replace(
                old,
                last_seen=now,
                ports=tuple(dict.fromkeys((*old.ports, *e.ports))),
                names=tuple(dict.fromkeys((*old.names, *e.names))),
                country=e.country or old.country,
                exit=old.exit or e.exit,
            )
        horizon = now - KEEP_DAYS * 86400
        kept = {ip: e for ip, e in entries.items() if e.last_seen >= horizon}
        return History(self.name, kept, now, source)


def relay_entries(relays: Sequence[Relay]) -> list[Entry]:
    """VPN Gate relays as history entries (times are set by `History.merge`)."""
    return [
        Entry(r.ip, 0.0, 0.0, r.ports, tuple(n for n in (r.hostname, r.fqdn) if n), r.country)
        for r in relays
    ]


# ---------------------------------------------------------------- Tor relay data

_R_LINE = re.compile(r"^r \S+ \S+ \S+ \d{4}-\d\d-\d\d \d\d:\d\d:\d\d (\S+) (\d+) (\d+)\s*$")
_A_LINE = re.compile(r"^a \[?([0-9A-Fa-f:.]+)\]?:(\d+)\s*$")


def _relay_port(digits: str) -> int | None:
    """A port from its digits; None for 0 or past 65535 (the history would reject it)."""
    port = int(digits)
    return port if 0 < port < 65536 else None


def _addr_port(text: str) -> tuple[IPAddress, int | None] | None:
    text = text.strip()
    m = re.match(r"^\[([0-9A-Fa-f:.]+)\]:(\d+)$", text) or re.match(r"^([0-9.]+):(\d+)$", text)
    try:
        if m:
            return parse_ip(m.group(1)), _relay_port(m.group(2))
        return parse_ip(text), None
    except ValueError:
        return None


def _add(out: dict[IPAddress, Entry], ip: IPAddress, port: int | None, exit_: bool) -> None:
    old = out.get(ip)
    ports = (("tcp", port),) if port else ()
    if old is None:
        out[ip] = Entry(ip, 0.0, 0.0, ports, exit=exit_)
    else:
        out[ip] = replace(
            old, ports=tuple(dict.fromkeys((*old.ports, *ports))), exit=old.exit or exit_
        )


def parse_tor(data: bytes | str, source: str = "tor list") -> list[Entry]:
    """Parse Tor relay data: a consensus, an Onionoo details document, or an exit list."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    head = text[:1024].lstrip()
    if head.lower().startswith(("<!doctype", "<html")):
        raise ListFormatError(f"{source}: got an HTML page instead of Tor relay data")
    out: dict[IPAddress, Entry] = {}
    if head.startswith("{"):
        _onionoo(text, source, out)
    else:
        for line in text.splitlines():
            if (m := _R_LINE.match(line)) or (m := _A_LINE.match(line)):
                with contextlib.suppress(ValueError):
                    _add(out, parse_ip(m.group(1)), _relay_port(m.group(2)), False)
            elif line.startswith("ExitAddress "):
                hit = _addr_port(line.split()[1]) if len(line.split()) > 1 else None
                if hit is not None:
                    _add(out, hit[0], None, True)
            elif (hit := _addr_port(line)) is not None:
                _add(out, hit[0], hit[1], True)
    if not out:
        raise ListFormatError(
            f"{source}: no relay addresses found "
            "(expected a consensus, Onionoo details or an exit list)"
        )
    return list(out.values())


def _onionoo(text: str, source: str, out: dict[IPAddress, Entry]) -> None:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise ListFormatError(f"{source}: not valid JSON ({str(exc)[:80]})") from None
    relays = doc.get("relays") if isinstance(doc, dict) else None
    if not isinstance(relays, list):
        raise ListFormatError(f"{source}: Onionoo document without a 'relays' list")
    for relay in relays:
        if not isinstance(relay, dict):
            continue
        for key, exit_ in (("or_addresses", False), ("exit_addresses", True)):
            values = relay.get(key)
            for value in values if isinstance(values, list) else ():
                hit = _addr_port(value) if isinstance(value, str) else None
                if hit is not None:
                    _add(out, hit[0], hit[1], exit_)


# ---------------------------------------------------------------- storage


def lists_dir(base: Path | None = None) -> Path:
    """Where list histories live: `<data_dir>/lists`."""
    return (base or paths.data_dir()) / "lists"


def history_path(name: str, base: Path | None = None) -> Path:
    """The history file of one list."""
    return lists_dir(base) / f"{name}.json"


def _entry_to_json(e: Entry) -> dict[str, Any]:
    return {
        "ip": str(e.ip),
        "first_seen": e.first_seen,
        "last_seen": e.last_seen,
        "ports": [f"{proto}/{port}" for proto, port in e.ports],
        "names": list(e.names),
        "country": e.country,
        "exit": e.exit,
    }


EARLIEST = 946_684_800.0
"""2000-01-01: no list was fetched before; an older time is damage, not history."""
MAX_HISTORY_BYTES = 256 * 1024 * 1024
"""A 30-day history of thousands of relays is a few MB; a larger file is not one of ours."""


class _DamageError(Exception):
    """One value of a history that cannot be right: where (a key path) and why."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(reason)
        self.key = key
        self.reason = reason


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _time(d: dict[str, Any], key: str, where: str) -> float:
    value = d.get(key)
    # NaN fails both comparisons; bool is an int but never a time.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _DamageError(f"{where}.{key}", f"{_shown(value)} is not a time")
    if not EARLIEST <= value <= LATEST:
        raise _DamageError(f"{where}.{key}", f"{_shown(value)} is not a time between 2000 and 2100")
    return float(value)


def _strings(d: dict[str, Any], key: str, where: str) -> list[str]:
    values = d.get(key, [])
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise _DamageError(f"{where}.{key}", f"{_shown(values)} is not a list of strings")
    return values


def _port(text: str, key: str) -> tuple[str, int]:
    proto, _, port = text.partition("/")
    if proto not in ("tcp", "udp") or not (port.isdecimal() and 0 < int(port) < 65536):
        raise _DamageError(key, f"{_shown(text)} is not tcp/PORT or udp/PORT (port 1-65535)")
    return proto, int(port)


def _entry_from_json(d: Any, where: str) -> Entry:
    """One history entry, every value checked: damage raises `_DamageError` naming its key."""
    if not isinstance(d, dict):
        raise _DamageError(where, f"{_shown(d)} is not an object")
    ip = d.get("ip")
    try:
        addr = parse_ip(ip) if isinstance(ip, str) else None
    except ValueError:
        addr = None
    if addr is None:
        raise _DamageError(f"{where}.ip", f"{_shown(ip)} is not an IP address")
    first, last = _time(d, "first_seen", where), _time(d, "last_seen", where)
    if first > last:
        raise _DamageError(f"{where}.first_seen", "is later than last_seen")
    ports = tuple(_port(p, f"{where}.ports") for p in _strings(d, "ports", where))
    country = d.get("country")
    if country is not None and not (isinstance(country, str) and len(country) == 2):
        raise _DamageError(f"{where}.country", f"{_shown(country)} is not a two-letter code")
    exit_ = d.get("exit", False)
    if not isinstance(exit_, bool):
        raise _DamageError(f"{where}.exit", f"{_shown(exit_)} is not true or false")
    names = tuple(_strings(d, "names", where))
    return Entry(addr, first, last, ports, names, country, exit_)


def _history_from_json(name: str, doc: Any) -> History:
    if not isinstance(doc, dict):
        raise _DamageError("(top)", f"a JSON {type(doc).__name__}, not an object")
    if doc.get("schema") != SCHEMA:
        raise _DamageError("schema", f"unsupported schema {_shown(doc.get('schema'))}")
    raw = doc.get("entries")
    if not isinstance(raw, list):
        raise _DamageError("entries", f"{_shown(raw)} is not a list")
    entries = [_entry_from_json(d, f"entries[{i}]") for i, d in enumerate(raw)]
    updated = None if doc.get("updated") is None else _time(doc, "updated", "(top)")
    source = doc.get("source")
    if source is not None and not isinstance(source, str):
        raise _DamageError("source", f"{_shown(source)} is not a string")
    return History(name, {e.ip: e for e in entries}, updated, source)


def load_history(name: str, base: Path | None = None) -> History:
    """Read a list's history; a missing file is an empty history, a damaged one an error.

    Every value is checked here, once, so that nothing downstream (the matcher formatting
    dates on every tick of the daemon) meets a NaN, a negative or an overflowing time, a port
    out of range or a value of the wrong type. The error names the file and the key (or the
    line, for JSON that does not parse) in one line.
    """
    path = history_path(name, base)
    try:
        doc = read_json(path, "; run 'netwatch lists update' to replace it")
    except FileNotFoundError:
        return History(name, {})
    try:
        return _history_from_json(name, doc)
    except _DamageError as exc:
        raise DataFileError(
            f"{exc.reason}; run 'netwatch lists update' to replace it",
            Location(str(path), key=exc.key),
        ) from None


def read_json(path: Path, fix: str) -> Any:
    """A list file's JSON document; FileNotFoundError when absent, else one located error.

    Shared by every list file (histories, provider ranges): a file that is too large, not
    UTF-8 or not JSON is a `DataFileError` naming the file (and the line, when JSON says
    where), with `fix` saying what replaces it.
    """
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_HISTORY_BYTES + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise DataFileError(f"cannot read: {exc.strerror or exc}", Location(str(path))) from None
    if len(data) > MAX_HISTORY_BYTES:
        raise DataFileError(f"larger than {MAX_HISTORY_BYTES} bytes{fix}", Location(str(path)))
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DataFileError(
            f"not UTF-8 text (byte {exc.start}){fix}", Location(str(path))
        ) from None
    except json.JSONDecodeError as exc:
        raise DataFileError(
            f"not JSON ({exc.msg}){fix}", Location(str(path), line=exc.lineno)
        ) from None
    except RecursionError:
        raise DataFileError(f"not JSON (nested too deeply){fix}", Location(str(path))) from None


def set_aside(name: str, base: Path | None = None) -> Path:
    """Rename a damaged history to `<name>.json.damaged` (kept to look at) and return it."""
    path = history_path(name, base)
    aside = path.with_name(path.name + ".damaged")
    os.replace(path, aside)
    return aside


def save_history(history: History, base: Path | None = None) -> Path:
    """Write a history atomically (temp file + rename) and return its path."""
    path = history_path(history.name, base)
    doc = {
        "schema": SCHEMA,
        "list": history.name,
        "updated": history.updated,
        "source": history.source,
        "entries": [_entry_to_json(e) for e in history.entries.values()],
    }
    write_json(path, doc)
    return path


def write_json(path: Path, doc: Any) -> None:
    """Write a list file atomically (temp file + rename), 0600 whatever the umask."""
    files.make_dirs(path.parent)
    # mkstemp creates the file 0600 whatever the umask; the rename keeps that mode.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# ---------------------------------------------------------------- matching


def _day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


class HistoryMatcher:
    """The enricher's `ListMatcher` over one list's history: hits by address, port noted."""

    def __init__(self, history: History) -> None:
        self.history = history

    def __len__(self) -> int:
        return len(self.history.entries)

    def match(self, ip: IPAddress, port: int | None) -> tuple[ListHit, ...]:
        """A hit when the address is in the history; the detail says whether the port matched."""
        e = self.history.entries.get(ip)
        if e is None:
            return ()
        bits = []
        if e.names:
            bits.append(e.names[-1])
        if port is not None and e.ports:
            on_port = any(p == port for _, p in e.ports)
            bits.append(f"port {port} {'listed' if on_port else 'not listed'}")
        if e.exit:
            bits.append("exit")
        bits.append(f"listed {_day(e.first_seen)} to {_day(e.last_seen)}")
        return (ListHit(self.history.name, ", ".join(bits), e.first_seen, e.last_seen),)


def load_matchers(base: Path | None = None) -> tuple[list[HistoryMatcher], dict[str, str]]:
    """Matchers for every stored list, and per-file problems (a broken file is skipped)."""
    matchers: list[HistoryMatcher] = []
    problems: dict[str, str] = {}
    for name in LISTS:
        path = history_path(name, base)
        history = load_or_note(partial(load_history, name, base), path, problems)
        if history is not None and history.entries:
            matchers.append(HistoryMatcher(history))
    return matchers, problems


def load_or_note(load: Callable[[], T], path: Path, problems: dict[str, str]) -> T | None:
    """Run one list file's loader; a damaged file is noted in `problems` and gives None.

    The enricher runs on without it, and shows the line (status bar, metrics, stderr).
    """
    try:
        return load()
    except DataFileError as exc:
        problems[str(path)] = str(exc)
        return None
