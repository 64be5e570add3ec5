"""Drill-down text (alert, flow, process, help) and advice, read as plain text."""

from __future__ import annotations

from dataclasses import replace

from netwatch.model import Action, Owner
from netwatch.ui.advice import LIST_FETCH, RELAY_OFF, advice_for
from netwatch.ui.detail import alert_detail, flow_detail, parent_chain, process_summary
from netwatch.ui.screens.help import help_text
from netwatch.ui.stats import Rate
from tests.builders import make_alert, make_flow, make_process, make_remote, make_snapshot

INIT = make_process("systemd", pid=1, ppid=None)
SHELL = make_process("bash", pid=100, ppid=1)
CLIENT = make_process("vpnclient", pid=200, ppid=100, cmdline=("vpnclient", "execsvc"))


def snapshot_with_parents():
    flows = tuple(
        make_flow("198.51.100.1", 443, local_port=1000 + p.pid, process=p)
        for p in (INIT, SHELL, CLIENT)
    )
    return make_snapshot(flows=flows)


def test_the_alert_screen_says_when_the_policy_only_logs_the_rule() -> None:
    logged = alert_detail(replace(make_alert(), action=Action.LOG), None, 0.0).plain
    assert "policy        log: kept for the record" in logged
    assert "policy " not in alert_detail(make_alert(), None, 0.0).plain


def test_parent_chain_uses_what_the_snapshot_knows() -> None:
    known = {p.pid: p for p in (INIT, SHELL, CLIENT)}
    assert parent_chain(CLIENT, known) == ["bash (100)", "systemd (1)"]
    assert parent_chain(CLIENT, {}) == ["pid 100"]
    loop = replace(CLIENT, ppid=200)
    assert parent_chain(loop, {200: loop}) == []


def test_alert_detail_has_evidence_process_remote_and_advice() -> None:
    remote = replace(make_remote("90.189.249.23", "RU"), owner=Owner("unknown", reason="timeout"))
    alert = replace(make_alert("vpngate.relay", process=CLIENT, count=3), remote=remote)
    text = alert_detail(alert, snapshot_with_parents(), now=alert.last_seen + 90).plain
    assert "[MED] vpngate.relay" in text
    assert "sni: www.vpngate.net" in text
    assert "seen          3x" in text
    assert "(1m ago)" in text
    assert "cmdline       vpnclient execsvc" in text
    assert "parents       bash (100) <- systemd (1)" in text
    assert "country       RU" in text
    assert "jurisdiction  none (commonly cited groupings)" in text
    assert "RDAP owner    unknown (timeout)" in text
    assert "Turn relay mode off" in text


def test_advice_depends_on_the_rule() -> None:
    assert advice_for(make_alert("vpngate.relay_inbound")) is RELAY_OFF
    assert advice_for(replace(make_alert("softether.server"), tags=("relay",))) is RELAY_OFF
    assert advice_for(make_alert("vpngate.list_fetch")) is LIST_FETCH
    assert "Anonymizer" in advice_for(make_alert("anon.tor"))[0]
    assert "expect this program to use a VPN" in advice_for(make_alert("vpn.unexpected_process"))[0]
    assert "policy" in advice_for(make_alert("other.thing"))[0]


def test_flow_detail_and_unknown_process() -> None:
    ef = make_flow(process=None, sni="www.vpngate.net")
    text = flow_detail(
        ef, Rate(10.0, 2048.0), None, [make_alert()], now=ef.flow.first_seen + 5
    ).plain
    assert "TLS SNI       www.vpngate.net" in text
    assert "received      4.2K (2.0K/s)" in text
    assert "unknown: the socket's owner could not be seen" in text
    assert "RDAP owner    not looked up" in text
    assert "Alerts on this flow" in text


def test_process_summary_counts_flows_bytes_and_countries() -> None:
    flows = [
        make_flow("198.51.100.1", 443, local_port=1, process=CLIENT, bytes_received=1000),
        make_flow(
            "198.51.100.2",
            443,
            local_port=2,
            process=CLIENT,
            bytes_received=24,
            remote=make_remote("198.51.100.2", "JP"),
        ),
    ]
    text = process_summary("vpnclient", flows, [make_alert(process=CLIENT)], None).plain
    assert text.startswith("vpnclient: 2 flows, 1 process(es)")
    assert "received      1.0K" in text
    assert "RU" in text and "JP" in text
    assert "Alerts (1)" in text


def test_help_lists_keys_and_the_filter_language() -> None:
    text = help_text().plain
    for needle in ("/ ", "pause rendering", "proc:NAME", "-term", "command palette", "[VPN]"):
        assert needle in text


def test_a_container_s_flow_is_shown_with_its_container() -> None:
    """The flow screen, the table's badge and `snapshot`'s process cell name the container."""
    from netwatch.cli.snapshot import table_row
    from netwatch.model import Container
    from netwatch.ui import fmt

    ef = make_flow("203.0.113.9", 443, process=CLIENT)
    assert "container" not in flow_detail(ef, Rate(), None, (), 0.0).plain
    assert "CTR" not in fmt.badges(ef) and table_row(ef, geo=False)[0] == "vpnclient"
    web = replace(ef, flow=replace(ef.flow, container=Container(7, "web", "docker")))
    assert "container     web (docker)" in flow_detail(web, Rate(), None, (), 0.0).plain
    assert "CTR" in fmt.badges(web) and fmt.proto(web).endswith("[CTR]")
    assert table_row(web, geo=False)[0] == "vpnclient@web"
    bare = replace(ef, flow=replace(ef.flow, container=Container(4026532533)))
    assert "container     netns:4026532533" in flow_detail(bare, Rate(), None, (), 0.0).plain
    assert table_row(bare, geo=False)[0] == "vpnclient@4026532533"
