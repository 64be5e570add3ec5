"""Host facts (SoftEther config on disk) and their path into detection through Engine.tick."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.detect.engine import RuleEngine
from netwatch.model import (
    Direction,
    Endpoint,
    FlowKey,
    SocketEntry,
    SocketTable,
    SourceStatus,
    Transport,
    parse_ip,
)
from netwatch.pipeline.engine import Engine
from netwatch.sources.hostfacts import HostFactsReader, parse_softether_config, read_host_facts
from tests.builders import make_process
from tests.clock import FakeClock

# The shape `vpnserver stop` writes (Debian softether-vpnserver 5.01), trimmed.
SERVER_CONFIG = """\ufeff# Software Configuration File
# ---------------------------
declare root
{
\tuint ConfigRevision 3
\tdeclare ListenerList
\t{
\t\tdeclare Listener0
\t\t{
\t\t\tbool DisableDos false
\t\t\tbool Enabled true
\t\t\tuint Port 443
\t\t}
\t\tdeclare Listener1
\t\t{
\t\t\tbool DisableDos false
\t\t\tbool Enabled false
\t\t\tuint Port 992
\t\t}
\t\tdeclare Listener2
\t\t{
\t\t\tbool Enabled true
\t\t\tuint Port 5555
\t\t}
\t}
\tdeclare VirtualHUB
\t{
\t\tdeclare DEFAULT
\t\t{
\t\t\tbool Online true
\t\t}
\t\tdeclare VPNGATE
\t\t{
\t\t\tbool Online true
\t\t\tdeclare UserList
\t\t\t{
\t\t\t\tdeclare VPN
\t\t\t\t{
\t\t\t\t\tstring RealName none
\t\t\t\t}
\t\t\t}
\t\t}
\t}
}
"""


def test_parse_config_finds_hubs_ports_and_vpngate() -> None:
    cfg = parse_softether_config(SERVER_CONFIG, "/var/lib/softether/vpn_server.config")
    assert cfg.hubs == ("DEFAULT", "VPNGATE")
    assert cfg.listener_ports == (443, 5555)
    assert cfg.vpngate


def test_a_user_named_vpngate_is_not_a_hub() -> None:
    text = SERVER_CONFIG.replace("declare VPNGATE", "declare OFFICE").replace(
        "declare VPN\n", "declare VPNGATE\n"
    )
    cfg = parse_softether_config(text, "/var/lib/softether/vpn_server.config")
    assert cfg.hubs == ("DEFAULT", "OFFICE")
    assert not cfg.vpngate


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}\n\t declarVPNGATEuintPort0123")), max_size=300))
def test_config_parser_never_crashes(text: str) -> None:
    parse_softether_config(text, "x/vpn_server.config")


def test_reader_checks_dirs_and_running_executables(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "vpn_server.config").write_text(SERVER_CONFIG.replace("VPNGATE", "OFFICE"))
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "vpn_server.config").write_text(SERVER_CONFIG)
    reader = HostFactsReader(dirs=[str(state)], refresh=60)
    first = reader.facts(100.0)
    assert [c.vpngate for c in first.softether] == [False]
    # A running vpnserver whose directory holds a VPNGATE hub is checked at once.
    second = reader.facts(101.0, [str(bindir / "vpnserver"), "/usr/bin/curl"])
    assert [c.path for c in second.vpngate_configs] == [str(bindir / "vpn_server.config")]
    assert reader.facts(102.0) is second


def test_missing_files_are_not_problems(tmp_path: Path) -> None:
    facts = read_host_facts(1.0, [tmp_path / "nope" / "vpn_server.config"])
    assert facts.softether == ()
    assert facts.problems == ()


class _Sockets:
    """A recorded socket table standing in for the OS."""

    def __init__(self, table: SocketTable) -> None:
        self.table = table

    def sample(self) -> SocketTable:
        return self.table

    def status(self) -> SourceStatus:
        return SourceStatus()


def test_engine_tick_passes_host_facts_to_the_rules(tmp_path: Path) -> None:
    (tmp_path / "vpn_server.config").write_text(SERVER_CONFIG)
    exe = "/usr/libexec/softether/vpnserver/vpnserver"
    listening = SocketEntry(
        FlowKey(Transport.TCP, Endpoint(parse_ip("0.0.0.0"), 443), None),
        "LISTEN",
        Direction.LISTEN,
        make_process("vpnserver", pid=77, exe=exe),
    )
    clock = FakeClock()
    engine = Engine(
        _Sockets(SocketTable(clock.now(), (listening,))),
        clock,
        detector=RuleEngine(),
        host=HostFactsReader(dirs=[str(tmp_path)]),
    )
    snap = engine.tick()
    relay = [a for a in snap.alerts if a.rule_id == "vpngate.relay_mode"]
    assert len(relay) == 1
    assert relay[0].process is not None and relay[0].process.name == "vpnserver"
    assert str(tmp_path / "vpn_server.config") in relay[0].message
    # Without host facts the same listener is not a relay.
    plain = Engine(_Sockets(SocketTable(clock.now(), (listening,))), clock, detector=RuleEngine())
    assert "vpngate.relay_mode" not in [a.rule_id for a in plain.tick().alerts]
