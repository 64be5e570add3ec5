"""Host facts: a read-only look at SoftEther config files for a VPN Gate relay hub (VG-RELAY-5),
and the interfaces and default routes a tunnel's rules need.

Enabling the VPN Gate Service creates a virtual hub named `VPNGATE`; SoftEther saves it as a
`declare VPNGATE` block inside `declare VirtualHUB` in `vpn_server.config` (or, for the relay
inside the client, somewhere in `vpn_client.config`). This module reads the usual config
paths, plus the directory of any running SoftEther executable, and never writes anything.
Reading may need root; what could not be read is reported in `HostFacts.problems`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from netwatch.model import HostFacts, SoftEtherAccount, SoftEtherConfig
from netwatch.sources.routes import RouteLookup, with_links

CONFIG_NAMES = ("vpn_server.config", "vpn_client.config", "vpn_bridge.config")
CONFIG_DIRS = (
    "/var/lib/softether",
    "/usr/libexec/softether/vpnserver",
    "/usr/libexec/softether/vpnclient",
    "/usr/libexec/softether/vpnbridge",
    "/usr/local/vpnserver",
    "/usr/local/vpnclient",
    "/usr/local/vpnbridge",
    "/opt/vpnserver",
    "/opt/vpnclient",
    "/opt/softether/vpnserver",
    "/opt/softether/vpnclient",
)
"""Debian's state dir, the package's binary dirs, and the tarball's usual install places."""
_SOFTETHER = frozenset({"vpnserver", "vpnclient", "vpnbridge"})
MAX_BYTES = 32 * 1024 * 1024
REFRESH_SECONDS = 60.0

_DECLARE = re.compile(r"^\s*declare\s+(\S+)\s*$")
_ITEM = re.compile(r"^\s*(bool|uint|uint64|string|byte)\s+(\S+)\s+(.*?)\s*$")


def parse_softether_config(text: str, path: str) -> SoftEtherConfig:
    """Hub names, enabled listener ports, client accounts and whether a VPNGATE hub is declared.

    The format is nested `declare <name>` blocks in braces with typed items (`src/Mayaqua/Cfg.h`).
    What the file holds is read even when it is damaged; `damage` says where it first went wrong,
    so a check can name the file and line instead of trusting a half-read file in silence.
    """
    stack: list[str] = []
    pending: str | None = None
    hubs: list[str] = []
    listener: dict[str, str] = {}
    ports: list[int] = []
    account: dict[str, str] = {}
    accounts: list[SoftEtherAccount] = []
    damage = ""
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if m := _DECLARE.match(line):
            pending = m.group(1)
        elif stripped == "{":
            stack.append(pending or "")
            pending = None
            if len(stack) >= 2 and stack[-2] == "VirtualHUB":
                hubs.append(stack[-1])
            if len(stack) >= 2 and stack[-2] == "ListenerList":
                listener = {}
            if len(stack) >= 2 and stack[-2] == "AccountDatabase":
                account = {"": stack[-1]}
        elif stripped == "}":
            if len(stack) >= 2 and stack[-2] == "ListenerList":
                port = listener.get("Port", "")
                if listener.get("Enabled", "true") == "true" and port.isdecimal():
                    ports.append(int(port))
            if len(stack) >= 2 and stack[-2] == "AccountDatabase":
                accounts.append(_account(account))
            if stack:
                stack.pop()
            elif not damage:
                damage = f"line {number}: '}}' closes no block"
        elif m := _ITEM.match(line):
            if len(stack) >= 2 and stack[-2] == "ListenerList":
                listener[m.group(2)] = m.group(3)
            elif _in_account(stack):
                account[m.group(2)] = m.group(3)
        elif "\0" in line and not damage:
            damage = f"line {number}: binary data, not a SoftEther text config"
    if not damage and stack:
        damage = f"end of file inside the '{stack[-1]}' block (the file is cut short)"
    if not damage and text.strip("\ufeff \t\r\n") and "root" not in _roots(text):
        damage = "no 'declare root' block: not a SoftEther config"
    vpngate = "VPNGATE" in hubs or (path.endswith("vpn_client.config") and _client_relay(text))
    return SoftEtherConfig(
        path, tuple(hubs), tuple(dict.fromkeys(ports)), vpngate, tuple(accounts), damage
    )


_ACCOUNT_HUB = re.compile(r"^\s*string\s+HubName\s+VPNGATE\s*$", re.MULTILINE)


def _client_relay(text: str) -> bool:
    """A client config that mentions VPNGATE other than as a connection's hub name.

    Where the in-client VPN Gate Service keeps its settings is not established, so any
    mention counts, except `HubName VPNGATE` in a connection: VPN Gate's public relays all
    serve a hub of that name, so a client merely *using* a relay has it (a connection the
    check reports on its own, at medium), and it does not make this PC a relay.
    """
    return "VPNGATE" in _ACCOUNT_HUB.sub("", text)


def _in_account(stack: list[str]) -> bool:
    """Inside an `AccountDatabase` entry, directly or in its `ClientOption` block."""
    return (len(stack) >= 2 and stack[-2] == "AccountDatabase") or (
        len(stack) >= 3 and stack[-3] == "AccountDatabase" and stack[-1] == "ClientOption"
    )


def _roots(text: str) -> set[str]:
    """The names declared at the top of the file (a SoftEther config has exactly `root`)."""
    return {m.group(1) for line in text.splitlines()[:50] if (m := _DECLARE.match(line))}


def _account(items: dict[str, str]) -> SoftEtherAccount:
    """An account from its items: `StartupAccount` at its level, the rest in `ClientOption`."""
    port = items.get("Port", "")
    retries = items.get("NumRetry", "")
    return SoftEtherAccount(
        name=items.get("AccountName") or items[""],
        hostname=items.get("Hostname", ""),
        port=int(port) if port.isdecimal() and int(port) < 65536 else None,
        hub=items.get("HubName", ""),
        startup=items.get("StartupAccount") == "true",
        retries=int(retries) if retries.isdecimal() and len(retries) < 12 else 0,
    )


def config_paths(exes: Iterable[str] = (), dirs: Iterable[str] = CONFIG_DIRS) -> list[Path]:
    """Candidate config files: next to each running SoftEther executable, then the usual dirs."""
    out: dict[Path, None] = {}
    for exe in exes:
        for name in CONFIG_NAMES:
            out[Path(exe).parent / name] = None
    for d in dirs:
        for name in CONFIG_NAMES:
            out[Path(d) / name] = None
    return list(out)


def read_host_facts(now: float, candidates: Iterable[Path]) -> HostFacts:
    """Read every candidate that exists; unreadable ones become problems, never errors."""
    configs: list[SoftEtherConfig] = []
    problems: list[str] = []
    for path in candidates:
        try:
            if not path.is_file():
                continue
            if path.stat().st_size > MAX_BYTES:
                problems.append(f"{path}: larger than {MAX_BYTES} bytes, not read")
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
        except PermissionError:
            problems.append(f"{path}: permission denied (run as root to check it)")
            continue
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror}")
            continue
        configs.append(parse_softether_config(text, str(path)))
    return HostFacts(now, tuple(configs), tuple(problems))


class HostFactsReader:
    """The engine's host-facts source: rereads the files at most every `refresh` seconds."""

    def __init__(
        self,
        dirs: Iterable[str] = CONFIG_DIRS,
        refresh: float = REFRESH_SECONDS,
        *,
        links: bool = True,
    ) -> None:
        self.dirs = tuple(dirs)
        self.refresh = refresh
        self.exes: set[str] = set()
        self._last: HostFacts | None = None
        self._routes = RouteLookup() if links else None
        """Interfaces and default routes are looked at every tick (a tunnel going down shows
        at once; `if_nameindex` and cached route lookups cost microseconds)."""

    def facts(self, now: float, exes: Iterable[str] = ()) -> HostFacts:
        """The host facts, reread when older than `refresh` or a new SoftEther program runs.

        `exes` are the executables of this tick's processes; SoftEther ones (`vpnserver`,
        `vpnclient`, `vpnbridge`) add their directory to the places checked.
        """
        new = {
            e for e in exes if Path(e).name.split(".")[0].split("_")[0] in _SOFTETHER
        } - self.exes
        if new:
            self.exes |= new
            self._last = None
        if self._last is None or now - self._last.taken_at >= self.refresh:
            self._last = read_host_facts(now, config_paths(sorted(self.exes), self.dirs))
        if self._routes is not None:
            self._last = with_links(self._last, self._routes)
        return self._last
