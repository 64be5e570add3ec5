"""Real VPN software between namespaces, watched live and recorded: OpenVPN, WireGuard, SoftEther.

Each test builds a lab (tests/netns.py, tag "cap"): the VPN client runs in the host namespace
(the machine netwatch watches), the server in a peer namespace. netwatch's live engine with
packet capture runs in the host namespace while the tunnel comes up, and tcpdump records the
same traffic. The test then asserts that
  * live capture attributed the tunnel's flow to the VPN process (`openvpn`, `wireguard-go`,
    `vpnclient`) and labelled it, and
  * `netwatch analyze` of the recorded capture labels the flow as that VPN (`vpn: true`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import requires_root, requires_tools
from tests.live.capture_lab import (
    Watch,
    analyze,
    process_name,
    remote_is,
    wait_for_line,
    wait_until,
)
from tests.locks import softether_lock
from tests.netns import HOST_IP, Lab

pytestmark = [pytest.mark.live, requires_root, pytest.mark.timeout(120)]


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab("cap") as lab:
        yield lab


def _vpn_flows(records: list[dict], ip: str, port: int) -> list[dict]:
    return [r for r in records if r["type"] == "flow" and remote_is(ip, port)(r)]


# ---------------------------------------------------------------- OpenVPN


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def _make_pki(d: Path) -> None:
    """A throwaway CA with a server and a client certificate (P-256, valid two days)."""
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl("req", "-x509", *ec, "-subj", "/CN=netwatch-test-ca", "-days", "2",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=d)  # fmt: skip
    for name, usage in (("server", "serverAuth"), ("client", "clientAuth")):
        ext = d / f"{name}.ext"
        ext.write_text(f"extendedKeyUsage={usage}\nkeyUsage=digitalSignature,keyAgreement\n")
        _openssl("req", "-new", *ec, "-subj", f"/CN={name}", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-days", "2", "-extfile", ext.name,
                 "-out", f"{name}.crt", cwd=d)  # fmt: skip


_OPENVPN = ["openvpn", "--dev", "tun", "--verb", "3", "--data-ciphers", "AES-256-GCM"]


def start_openvpn_server(
    lab: Lab, work: Path, server_ip: str, proto: str = "udp", subnet: str = "10.77.0",
    wrap: tuple[str, ...] = (),
) -> None:  # fmt: skip
    """An OpenVPN server (TLS mode, `proto` udp or tcp, port 1194) in a peer at `server_ip`.

    Makes the throwaway PKI in `work` that `start_openvpn_client` uses too; `wrap` adds
    control-channel options (`--tls-crypt-v2 KEY`).
    """
    peer = lab.add_peer(server_ip)
    _make_pki(work)
    server = lab.spawn(
        peer.ns,
        [*_OPENVPN, "--proto", "udp" if proto == "udp" else "tcp-server", "--port", "1194",
         "--mode", "server", "--tls-server", "--topology", "subnet",
         "--ifconfig", f"{subnet}.1", "255.255.255.0", "--dh", "none", *wrap,
         "--ca", str(work / "ca.crt"), "--cert", str(work / "server.crt"),
         "--key", str(work / "server.key")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
    )  # fmt: skip
    wait_for_line(server.stdout, "Initialization Sequence Completed", 20)


def start_openvpn_client(
    lab: Lab, work: Path, server_ip: str, proto: str = "udp", wrap: tuple[str, ...] = ()
) -> subprocess.Popen[bytes]:
    """The client in the host namespace, returned once its tunnel is up."""
    client = lab.spawn(
        lab.host,
        [*_OPENVPN, "--client", "--proto", "udp" if proto == "udp" else "tcp-client",
         "--remote", server_ip, "1194", "--nobind", "--remote-cert-tls", "server", *wrap,
         "--ca", str(work / "ca.crt"), "--cert", str(work / "client.crt"),
         "--key", str(work / "client.key")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=0,
    )  # fmt: skip
    wait_for_line(client.stdout, "Initialization Sequence Completed", 30)
    return client


def openvpn_pair(
    lab: Lab, tmp_path: Path, server_ip: str, subnet: str, proto: str,
    server_wrap: tuple[str, ...] = (), client_wrap: tuple[str, ...] = (),
) -> Watch:  # fmt: skip
    """Run an OpenVPN server in a peer and a client in the host until both are up, watched."""
    start_openvpn_server(lab, tmp_path, server_ip, proto, subnet, server_wrap)
    watch = Watch(lab, tmp_path).start()
    start_openvpn_client(lab, tmp_path, server_ip, proto, client_wrap)
    watch.stop()
    return watch


@requires_tools("openvpn", "openssl", "tcpdump")
@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_openvpn_tls(lab: Lab, tmp_path: Path, proto: str) -> None:
    server_ip = "198.51.100.10"
    watch = openvpn_pair(lab, tmp_path, server_ip, "10.77.0", proto)

    live = watch.flows(remote_is(server_ip, 1194))
    assert live, "live capture saw no flow to the OpenVPN server"
    owned = [f for f in live if process_name(f) == "openvpn"]
    assert owned, f"flows not attributed to openvpn: {[process_name(f) for f in live]}"
    assert any(f["app"] == "openvpn" and f["vpn"] for f in owned), owned[-1]
    assert owned[-1]["transport"] == proto and owned[-1]["src"] == HOST_IP

    (flow,) = _vpn_flows(analyze(watch.pcap), server_ip, 1194)
    assert (flow["app"], flow["category"], flow["vpn"]) == ("openvpn", "vpn", True)
    assert flow["src"] == HOST_IP and flow["packets_sent"] > 3 and flow["packets_received"] > 3


# ---------------------------------------------------------------- WireGuard

WG_ENV = {**os.environ, "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD": "1"}


def _wg_keys(lab: Lab, d: Path, name: str) -> str:
    key = subprocess.run(["wg", "genkey"], capture_output=True, text=True, check=True).stdout
    (d / f"{name}.key").write_text(key)
    (d / f"{name}.key").chmod(0o600)
    return subprocess.run(
        ["wg", "pubkey"], input=key, capture_output=True, text=True, check=True
    ).stdout.strip()


def _wg_up(lab: Lab, ns: str, d: Path, name: str, addr: str, peer_pub: str,
           endpoint: str | None, peer_addr: str) -> str:  # fmt: skip
    """Start wireguard-go in `ns` and configure it; return the interface name.

    wireguard-go's control socket lives in /var/run/wireguard/<ifname>.sock whatever the
    namespace, so every interface gets a name unique to this lab and side.
    """
    ifname = f"wg{lab.host[-8:-1]}{name[0]}"[:15]
    lab.spawn(ns, ["wireguard-go", "-f", ifname], env=WG_ENV)
    wait_until(
        lambda: lab.run(ns, ["ip", "link", "show", ifname]).returncode == 0,
        10,
        f"{ifname} to appear",
    )
    cmd = ["wg", "set", ifname, "private-key", str(d / f"{name}.key"), "listen-port", "51820",
           "peer", peer_pub, "allowed-ips", f"{peer_addr}/32"]  # fmt: skip
    if endpoint:
        cmd += ["endpoint", f"{endpoint}:51820"]
    lab.exec_ok(ns, cmd)
    lab.exec_ok(ns, ["ip", "addr", "add", f"{addr}/24", "dev", ifname])
    lab.exec_ok(ns, ["ip", "link", "set", ifname, "up"])
    return ifname


def wg_poke(lab: Lab, tunnel_peer: str = "10.78.0.2") -> None:
    """One datagram from the host into the tunnel: wireguard-go then does its handshake."""
    send = (
        "import socket; "
        f"socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x', ('{tunnel_peer}', 9))"
    )
    lab.exec_ok(lab.host, ["python3", "-c", send])


def wait_wg_handshake(lab: Lab, ifname: str) -> None:
    """Wait until wireguard-go on the host reports a completed handshake on `ifname`."""

    def done() -> bool:
        res = lab.run(lab.host, ["wg", "show", ifname, "latest-handshakes"])
        return res.returncode == 0 and res.stdout.split()[-1:] != ["0"] and bool(res.stdout)

    wait_until(done, 15, "the WireGuard handshake")


def wg_handshake(lab: Lab, ifname: str, tunnel_peer: str) -> None:
    """Poke the tunnel, wait for the handshake, and poke once more so transport data follows."""
    wg_poke(lab, tunnel_peer)
    wait_wg_handshake(lab, ifname)
    wg_poke(lab, tunnel_peer)


def wg_pair(lab: Lab, tmp_path: Path, server_ip: str, subnet: str) -> tuple[Watch, str]:
    """wireguard-go in a peer and in the host (watched), before any handshake; the host's
    interface name. The tunnel addresses are `subnet`.1 (host) and .2 (peer)."""
    peer = lab.add_peer(server_ip)
    host_pub, peer_pub = _wg_keys(lab, tmp_path, "host"), _wg_keys(lab, tmp_path, "peer")
    _wg_up(lab, peer.ns, tmp_path, "peer", f"{subnet}.2", host_pub, None, f"{subnet}.1")
    watch = Watch(lab, tmp_path).start()
    host = f"{subnet}.1"
    ifname = _wg_up(lab, lab.host, tmp_path, "host", host, peer_pub, server_ip, f"{subnet}.2")
    return watch, ifname


@requires_tools("wireguard-go", "wg", "tcpdump")
def test_wireguard_go(lab: Lab, tmp_path: Path) -> None:
    server_ip = "198.51.100.11"
    watch, ifname = wg_pair(lab, tmp_path, server_ip, "10.78.0")
    wg_handshake(lab, ifname, "10.78.0.2")
    watch.stop()

    live = watch.flows(remote_is(server_ip, 51820))
    owned = [f for f in live if process_name(f) == "wireguard-go"]
    assert owned, f"flows not attributed to wireguard-go: {[process_name(f) for f in live]}"
    assert any(f["app"] == "wireguard" and f["vpn"] for f in owned), owned[-1]

    (flow,) = _vpn_flows(analyze(watch.pcap), server_ip, 51820)
    assert (flow["app"], flow["vpn"], flow["confidence"]) == ("wireguard", True, "high")


# ---------------------------------------------------------------- SoftEther

SE_SERVER = "/usr/libexec/softether/vpnserver/vpnserver"
SE_CLIENT = "/usr/libexec/softether/vpnclient/vpnclient"
SE_CMD = "/usr/libexec/softether/vpncmd/vpncmd"
SE_STATE = (Path("/var/lib/softether"), Path("/run/softether"))


def _vpncmd(lab: Lab, ns: str, *args: str) -> None:
    res = lab.run(ns, [SE_CMD, *args], timeout=30, input="")
    assert res.returncode == 0 and "completed successfully" in res.stdout, res.stdout[-800:]


@pytest.fixture
def softether(lab: Lab) -> Iterator[Lab]:
    """Hold the SoftEther lock; remove its machine-global state afterwards.

    SoftEther resolves its DDNS, NAT-T and keep-alive hosts on start; each lab namespace gets
    a resolv.conf pointing at its own loopback (`ip netns exec` mounts /etc/netns/NS/) so
    those lookups fail at once instead of heading for the machine's resolver.
    """
    with softether_lock():
        if any(p.exists() for p in SE_STATE):
            pytest.skip("SoftEther state from another run exists in /var/lib or /run")
        SE_STATE[1].mkdir(parents=True)
        try:
            yield lab
        finally:
            # Each program is stopped where it runs (it finds its instance through files in
            # /run/softether); the lab then kills whatever is left in the namespaces.
            stops = [(lab.host, SE_CLIENT)] + [(p.ns, SE_SERVER) for p in lab.peers]
            for ns, prog in stops:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    lab.run(ns, [prog, "stop"], timeout=15, input="")
            lab.close()
            for p in SE_STATE:
                shutil.rmtree(p, ignore_errors=True)
            for ns in (lab.host, *(p.ns for p in lab.peers)):
                shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)
            with contextlib.suppress(OSError):  # only if no one else uses it
                Path("/etc/netns").rmdir()


@requires_tools(SE_SERVER, SE_CLIENT, SE_CMD, "tcpdump")
def test_softether_client_to_server(softether: Lab, tmp_path: Path) -> None:
    lab = softether
    server_ip = "198.51.100.12"
    peer = lab.add_peer(server_ip)
    for ns in (lab.host, peer.ns):
        conf = Path("/etc/netns") / ns / "resolv.conf"
        conf.parent.mkdir(parents=True, exist_ok=True)
        conf.write_text("nameserver 127.0.0.1\n")
    assert lab.run(peer.ns, [SE_SERVER, "start"], input="").returncode == 0
    admin = ["localhost:5555", "/SERVER"]
    wait_until(
        lambda: lab.run(peer.ns, [SE_CMD, *admin, "/CMD", "About"], input="").returncode == 0,
        20,
        "vpnserver to answer",
    )
    _vpncmd(lab, peer.ns, *admin, "/CMD", "HubCreate", "VPN", "/PASSWORD:hubpw")
    hub = [*admin, "/HUB:VPN", "/PASSWORD:hubpw", "/CMD"]
    _vpncmd(lab, peer.ns, *hub, "UserCreate", "u", "/GROUP:none", "/REALNAME:none", "/NOTE:none")
    _vpncmd(lab, peer.ns, *hub, "UserPasswordSet", "u", "/PASSWORD:userpw")

    watch = Watch(lab, tmp_path).start()
    assert lab.run(lab.host, [SE_CLIENT, "start"], input="").returncode == 0
    client = ["localhost", "/CLIENT", "/CMD"]
    wait_until(
        lambda: lab.run(lab.host, [SE_CMD, *client, "AccountList"], input="").returncode == 0,
        20,
        "vpnclient to answer",
    )
    _vpncmd(lab, lab.host, *client, "NicCreate", "nw0")
    _vpncmd(lab, lab.host, *client, "AccountCreate", "lab", f"/SERVER:{server_ip}:443",
            "/HUB:VPN", "/USERNAME:u", "/NICNAME:nw0")  # fmt: skip
    _vpncmd(lab, lab.host, *client, "AccountPasswordSet", "lab", "/PASSWORD:userpw",
            "/TYPE:standard")  # fmt: skip
    _vpncmd(lab, lab.host, *client, "AccountConnect", "lab")

    def established() -> bool:
        res = lab.run(lab.host, [SE_CMD, *client, "AccountStatusGet", "lab"], input="")
        return "Session Established" in res.stdout

    wait_until(established, 30, "the SoftEther session")
    # The live view lags the wire by a probe tick (0.3 s) plus the capture ring's block
    # timeout: under CI's load the last snapshot once came before the watermark upload was
    # read (the flow still "tls"). Let the probe tick a few more times before stopping it.
    time.sleep(1.5)
    watch.stop()

    live = watch.flows(remote_is(server_ip, 443))
    owned = [f for f in live if process_name(f) == "vpnclient"]
    assert owned, f"flows not attributed to vpnclient: {[process_name(f) for f in live]}"
    assert all(f["transport"] == "tcp" and f["src"] == HOST_IP for f in owned)

    assert any(f["app"] == "softether" and f["vpn"] for f in owned), owned[-1]

    recorded = _vpn_flows(analyze(watch.pcap), server_ip, 443)
    assert recorded and all(f["src"] == HOST_IP for f in recorded)
    assert any(
        (f["app"], f["category"], f["vpn"]) == ("softether", "vpn", True) for f in recorded
    ), [(f["app"], f["sni"], f["evidence"]) for f in recorded]


@requires_tools("openssl", "tcpdump")
def test_an_ordinary_https_server_asked_with_its_address_as_server_name_is_not_softether(
    lab: Lab, tmp_path: Path
) -> None:
    # What a video or conferencing app or a speaker does: TLS to an address, with that address
    # as the server name (openssl sends it; Python's ssl never puts an IP in the SNI).
    server_ip = "198.51.100.13"
    peer = lab.add_peer(server_ip)
    _make_pki(tmp_path)
    server = lab.spawn(
        peer.ns,
        ["openssl", "s_server", "-accept", "443", "-www", "-cert", str(tmp_path / "server.crt"),
         "-key", str(tmp_path / "server.key")],
        stdout=subprocess.PIPE,
        bufsize=0,
    )  # fmt: skip
    wait_for_line(server.stdout, "ACCEPT", 20)
    watch = Watch(lab, tmp_path).start()
    res = lab.run(
        lab.host,
        ["openssl", "s_client", "-connect", f"{server_ip}:443", "-servername", server_ip,
         "-quiet"],  # -quiet waits for the server to close (it does after its answer)
        timeout=30,
        input="GET / HTTP/1.0\r\n\r\n",
    )  # fmt: skip
    assert "HTTP/1.0 200 ok" in res.stdout, res.stderr[-500:]
    watch.stop()

    records = analyze(watch.pcap)
    (flow,) = _vpn_flows(records, server_ip, 443)
    assert flow["sni"] == server_ip
    assert (flow["app"], flow["vpn"]) == ("tls", False), flow["evidence"]
    assert "numeric_sni" in [e["name"] for e in flow["evidence"]]
    vpn_alerts = [r for r in records if r["type"] == "alert" and r["rule"].startswith("vpn.")]
    assert vpn_alerts == []
    live = watch.flows(remote_is(server_ip, 443))
    assert live and not any(f["vpn"] for f in live), [f["app"] for f in live]
