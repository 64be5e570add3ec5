"""What `netwatch check` looks at on this machine: VPN packages, their processes, listeners,
interfaces and default routes.

Only gathers facts (read-only: `dpkg-query`, the process and socket tables, the SoftEther
config files through `sources.hostfacts`, the interface list and the kernel's route lookup);
`detect.check` judges them, so the judging is tested on recorded facts. Whatever cannot be
looked at becomes a line in `problems`.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable, Sequence

import psutil

from netwatch.model import CheckFacts, InstalledVpn, Listener, Transport
from netwatch.sources.hostfacts import CONFIG_DIRS, config_paths, read_host_facts
from netwatch.sources.routes import with_links
from netwatch.sources.sockets import SocketSampler

VPN_PACKAGES: dict[str, tuple[str, ...]] = {
    "softether-vpnserver": ("vpnserver",),
    "softether-vpnclient": ("vpnclient",),
    "softether-vpnbridge": ("vpnbridge",),
    "softether-vpncmd": (),
    "openvpn": ("openvpn",),
    "wireguard-tools": (),
    "strongswan": ("charon", "charon-systemd", "starter"),
    "strongswan-charon": ("charon",),
    "strongswan-swanctl": ("charon-systemd",),
    "libreswan": ("pluto",),
    "openconnect": ("openconnect",),
    "tor": ("tor",),
}
"""Debian packages of VPN and anonymizer software, and the process names their programs run as."""

_SOFTETHER = frozenset({"vpnserver", "vpnclient", "vpnbridge"})


def installed_packages(names: Sequence[str]) -> tuple[dict[str, str], str]:
    """Installed package -> version, from `dpkg-query`; and a problem line ('' if none).

    Removed packages whose config files remain (`config-files`) are not installed.
    """
    dpkg = shutil.which("dpkg-query")
    if dpkg is None:
        return {}, "no dpkg-query: installed packages not checked (not a Debian system?)"
    # Unknown names make dpkg-query exit 1 after listing the known ones: stdout is the answer.
    res = subprocess.run(  # noqa: S603 - fixed argv, package names from VPN_PACKAGES
        [dpkg, "-W", "-f", "${Package}\t${db:Status-Status}\t${Version}\n", *names],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    out = {}
    for line in res.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 3 and parts[1] == "installed":
            out[parts[0]] = parts[2]
    return out, ""


def running_programs() -> dict[str, list[str]]:
    """Process name -> `name (pid N)` for every process (psutil; unseen names are skipped)."""
    out: dict[str, list[str]] = {}
    for proc in psutil.process_iter(["name", "pid"]):
        name = proc.info.get("name") or ""
        if name:
            out.setdefault(name, []).append(f"{name} (pid {proc.info['pid']})")
    return out


def listeners() -> tuple[list[Listener], str]:
    """Listening TCP and unconnected UDP sockets with their owners; and a problem line.

    Read through the socket sampler the dashboard and daemon use (sock_diag, one /proc walk
    for owners), not a second listing of the machine's sockets.
    """
    sampler = SocketSampler()
    try:
        table = sampler.sample()
    finally:
        sampler.close()
    out: list[Listener] = []
    for e in table.entries:
        k = e.key
        tcp = k.transport is Transport.TCP
        if k.remote is not None or not (tcp or k.transport is Transport.UDP):
            continue
        if tcp and e.state != "LISTEN":
            continue
        p = e.process
        name, pid = (p.name, p.pid) if p is not None else ("", None)
        out.append(Listener(k.transport.value, str(k.local.ip), k.local.port, name, pid))
    return out, ""


def gather(now: float, softether_dirs: Iterable[str] = CONFIG_DIRS) -> CheckFacts:
    """Look at the packages, processes, listening sockets and SoftEther config files."""
    problems: list[str] = []
    versions, problem = installed_packages(list(VPN_PACKAGES))
    if problem:
        problems.append(problem)
    running = running_programs()
    packages = tuple(
        InstalledVpn(
            pkg,
            version,
            tuple(p for prog in VPN_PACKAGES.get(pkg, ()) for p in running.get(prog, [])),
        )
        for pkg, version in sorted(versions.items())
    )
    socks, problem = listeners()
    if problem:
        problems.append(problem)
    exes = sorted(
        {
            exe
            for proc in psutil.process_iter(["name", "exe"])
            if (proc.info.get("name") or "") in _SOFTETHER and (exe := proc.info.get("exe"))
        }
    )
    host = read_host_facts(now, config_paths(exes, softether_dirs))
    host = with_links(host)
    return CheckFacts(host, packages, tuple(socks), tuple(problems))
