"""Provider facts: the bundled table's completeness and sources, the loader, and where they go.

The table must cover every label netwatch can give that means an operator (or say "self-
hosted"), and every fact in it must carry an https source and the day it was checked.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import tomllib
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from netwatch import codec
from netwatch.detect.fields import Env
from netwatch.detect.messages import flow_values
from netwatch.detect.policy import PolicyView
from netwatch.dissect import labels
from netwatch.dissect.dissector import _DNS_NAMES
from netwatch.enrich import providers as providers_mod
from netwatch.enrich.enricher import Enricher
from netwatch.enrich.jurisdiction import bundled as jurisdictions
from netwatch.enrich.providers import ISO_3166, RELAY_LISTS, bundled, load, parse
from netwatch.enrich.ranges import FETCHED, load_bundled
from netwatch.errors import DataFileError
from netwatch.export.csv import csv_lines
from netwatch.export.ecs import ecs_document
from netwatch.export.schema import HEADER
from netwatch.export.syslog import format_rfc5424
from netwatch.model import CertNames, IPAddress, ListHit, parse_ip
from netwatch.model.provider import NO_OPERATOR_KINDS
from netwatch.ui.detail import alert_detail, flow_detail
from netwatch.ui.stats import Rate
from tests.builders import T0, make_alert, make_flow, make_label, make_remote

REPO = Path(__file__).resolve().parents[2]
TABLE = bundled()


def _plain_names() -> set[str]:
    """Label names the dissectors give with `labels.plain` (no VPN, so no operator)."""
    found = set(_DNS_NAMES.values())
    for path in (REPO / "netwatch" / "dissect").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "labels"
                and node.func.attr == "plain"
                and isinstance(node.args[0], ast.Constant)
            ):
                found.add(node.args[0].value)
    return found


# ---------------------------------------------------------------- the bundled table


def test_every_label_that_means_an_operator_has_an_entry() -> None:
    plain = _plain_names()
    assert {"tls", "dns", "quic", "http"} <= plain  # the scan finds them
    operator_labels = labels.NAMES - plain
    assert {"openvpn", "vpngate", "tor", "nordvpn", "fortinet", "pia"} <= operator_labels
    missing = sorted(operator_labels - set(TABLE.by_label))
    assert not missing, f"labels with no provider entry: {missing}"
    assert TABLE.by_label["openvpn"].id == "self-hosted"
    assert TABLE.by_label["wireguard"].id == "self-hosted"


def test_every_address_list_netwatch_matches_has_an_entry() -> None:
    lists = {*FETCHED, load_bundled().provider, "vpngate", "tor"}
    assert lists <= set(TABLE.by_list), sorted(lists - set(TABLE.by_list))
    assert set(TABLE.by_list) >= RELAY_LISTS


def _is_day(text: str) -> bool:
    return date.fromisoformat(text).isoformat() == text


def test_every_fact_has_an_https_source_and_a_checked_date() -> None:
    assert TABLE.version and _is_day(TABLE.checked)
    for p in TABLE.providers:
        assert p.source.startswith("https://"), p.id
        assert _is_day(p.checked) and p.checked <= TABLE.checked, p.id
        for url, day in [
            *((f.url, f.checked) for f in p.facts),
            *((a.url, a.checked) for a in p.audits),
            *((i.url, i.checked) for i in p.incidents),
        ]:
            assert url.startswith("https://") and _is_day(day), (p.id, url)
    for c in TABLE.context:
        assert c.url.startswith("https://") and _is_day(c.checked)


def test_every_operator_has_a_known_country_or_says_why_not() -> None:
    for p in TABLE.providers:
        if p.kind in NO_OPERATOR_KINDS:
            assert p.country is None, p.id
        elif p.country is None:
            assert p.country_note, p.id
        else:
            assert p.country in ISO_3166, p.id
            assert p.groups == jurisdictions().of(p.country), p.id


def test_the_named_cases_are_on_record() -> None:
    vpngate = TABLE.named("VPN Gate")
    assert vpngate is not None and vpngate.country == "JP"
    assert vpngate.operator == "University of Tsukuba"
    assert any("three months" in f.text and "about_abuse" in f.url for f in vpngate.facts)
    assert vpngate.summary == "VPN Gate (University of Tsukuba, JP, no audit; logs kept ≥3 months)"
    assert TABLE.named("tor") is not None and TABLE.named("tor").country is None  # type: ignore[union-attr]
    self_hosted = TABLE.named("self-hosted")
    assert self_hosted is not None and "you" in self_hosted.operator
    mullvad = TABLE.named("mullvad")
    assert mullvad is not None and mullvad.groups == ("14 Eyes",)
    assert any(i.year == 2023 for i in mullvad.incidents)
    proton = TABLE.named("protonvpn")
    assert proton is not None
    assert any("not the VPN" in i.what for i in proton.incidents if i.year == 2021)
    assert any(c.year == 2013 and "Lavabit" in c.what for c in TABLE.context)


# ---------------------------------------------------------------- the loader

GOOD = """\
version = "1"
checked = "2026-12-02"
[[provider]]
id = "x"
name = "X VPN"
kind = "commercial"
operator = "X Ltd"
country = "SE"
labels = ["xvpn"]
source = "https://x.example/"
checked = "2026-12-01"
[[provider.audit]]
auditor = "A"
year = 2024
scope = "no-logs"
url = "https://a.example/"
checked = "2026-12-01"
"""


def test_a_replacement_file_loads_with_derived_groups(tmp_path: Path) -> None:
    f = tmp_path / "p.toml"
    f.write_text(GOOD, encoding="utf-8")
    table = load(f)
    (x,) = table.providers
    assert (x.country, x.groups, x.audit_text) == ("SE", ("14 Eyes",), "1 audit (A 2024)")
    assert table.by_label["xvpn"] is x


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (('country = "SE"', 'country = "UK"'), "provider[0].country"),
        (('country = "SE"\n', ""), "provider[0].country"),
        (('source = "https://x.example/"', 'source = "http://x.example/"'), "provider[0].source"),
        (('/"\nchecked = "2026-12-01"', '/"\nchecked = "2026-13-01"'), "provider[0].checked"),
        (("year = 2024", "year = 1200"), "provider[0].audit[0].year"),
        (('kind = "commercial"', 'kind = "friendly"'), "provider[0].kind"),
        (('labels = ["xvpn"]', 'labels = ["X VPN"]'), "provider[0].labels[0]"),
        (('version = "1"\n', ""), "version"),
        (("[[provider]]", "[[nothing]]"), "provider"),
        (('name = "X VPN"', 'name = "X\\nVPN"'), "provider[0].name"),
        (("[[provider]]", "[ provider"), "not valid TOML"),
    ],
)  # fmt: skip
def test_bad_files_give_one_located_line(
    tmp_path: Path, change: tuple[str, str], where: str
) -> None:
    f = tmp_path / "p.toml"
    f.write_text(GOOD.replace(*change, 1), encoding="utf-8")
    with pytest.raises(DataFileError) as err:
        load(f)
    assert str(err.value).startswith(str(f)), err.value
    assert where in str(err.value)
    assert "\n" not in str(err.value)


def test_a_label_claimed_twice_names_both(tmp_path: Path) -> None:
    second = GOOD.split("[[provider.audit]]")[0].split("[[provider]]\n")[1]
    twice = GOOD + "[[provider]]\n" + second.replace('id = "x"', 'id = "y"')
    f = tmp_path / "p.toml"
    f.write_text(twice, encoding="utf-8")
    with pytest.raises(
        DataFileError, match=r"provider\[1\]\.labels\[0\]: 'xvpn' already belongs to 'x'"
    ):
        load(f)


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=12) | st.dates(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
KEYS = ["id", "name", "kind", "operator", "country", "country_note", "labels", "lists", "hosts",
        "logging", "source", "checked", "fact", "audit", "incident"]  # fmt: skip


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(KEYS), JSONISH, st.sampled_from(["provider", "context", "version"]))
def test_any_damaged_value_loads_checked_or_fails_with_one_located_line(
    key: str, value: Any, top: str
) -> None:
    data: dict[str, Any] = tomllib.loads(GOOD)
    if top == "provider":
        data["provider"][0][key] = value
    else:
        data[top] = value
    try:
        table = parse(data, "inline.toml")
    except DataFileError as exc:
        problem = str(exc)
    else:
        problem = None
    if problem is not None:
        assert problem.startswith("inline.toml: "), problem
        assert "\n" not in problem
        return
    for p in table.providers:  # whatever loaded was checked
        assert p.source.startswith("https://")
        assert p.country is None or p.country in ISO_3166


# ---------------------------------------------------------------- recognising a flow's provider


def _hit(name: str) -> ListHit:
    return ListHit(name, "test")


def test_a_protocol_alone_is_self_hosted_and_a_list_names_the_operator() -> None:
    ef = make_flow(label=make_label("openvpn"))
    assert TABLE.for_flow(ef.flow, ()) is TABLE.named("self-hosted")
    assert TABLE.for_flow(ef.flow, (_hit("vpngate"),)) is TABLE.named("vpngate")
    wg = make_flow(label=make_label("wireguard"))
    assert TABLE.for_flow(wg.flow, (_hit("mullvad"),)) is TABLE.named("mullvad")


def test_a_server_name_names_the_operator_before_the_label() -> None:
    azure = make_flow(label=make_label("softether"), sni="abc.vpnazure.net")
    assert TABLE.for_flow(azure.flow, ()) is TABLE.named("softether-cloud")
    cert = CertNames("CN=x", "CN=x", ("relay.opengw.net",))
    by_cert = make_flow(label=make_label("softether"), tls_cert=cert)
    assert TABLE.for_flow(by_cert.flow, ()) is TABLE.named("vpngate")
    not_a_suffix = make_flow(label=make_label("openvpn"), sni="notvpngate.net")
    assert TABLE.for_flow(not_a_suffix.flow, ()) is TABLE.named("self-hosted")


def test_plain_flows_get_a_provider_only_from_a_relay_list() -> None:
    tls = make_flow(label=make_label("tls", "web", vpn=False))
    assert TABLE.for_flow(tls.flow, (_hit("vpngate"),)) is TABLE.named("vpngate")
    assert TABLE.for_flow(tls.flow, (_hit("warp"),)) is None  # WARP's ranges carry other ports
    assert TABLE.for_flow(make_flow().flow, ()) is None


class _Lists:
    def __init__(self, hits: dict[str, str]) -> None:
        self.hits = hits

    def match(self, ip: IPAddress, port: int | None) -> tuple[ListHit, ...]:
        name = self.hits.get(str(ip))
        return (ListHit(name, "test"),) if name else ()


def test_the_enricher_attaches_the_provider_and_keeps_the_answer_object() -> None:
    relay = "219.100.37.226"
    enricher = Enricher([], lists=[_Lists({relay: "vpngate"})], providers=TABLE)
    vpn = make_flow(remote_ip=relay, label=make_label("openvpn"), with_remote=False).flow
    got = enricher.enrich(vpn)
    assert got.remote is not None and got.remote.provider is TABLE.named("vpngate")
    lookup = enricher.remote_info(relay)
    assert lookup.provider is TABLE.named("vpngate")  # `netwatch lookup` sees it too
    other = make_flow(remote_ip="203.0.113.9", label=make_label("wireguard"), with_remote=False)
    first, second = enricher.enrich(other.flow), enricher.enrich(other.flow)
    assert first.remote is second.remote  # same answer object: later stages skip it
    assert first.remote is not None and first.remote.provider is TABLE.named("self-hosted")
    plain = make_flow(remote_ip="203.0.113.9", with_remote=False).flow
    assert enricher.enrich(plain).remote.provider is None  # type: ignore[union-attr]
    without = Enricher([], lists=[_Lists({relay: "vpngate"})])
    assert without.enrich(vpn).remote.provider is None  # type: ignore[union-attr]


# ---------------------------------------------------------------- where the facts go


def _vpngate_remote() -> Any:
    return replace(make_remote(ip="219.100.37.226", country="JP"), provider=TABLE.named("vpngate"))


def test_the_codec_carries_the_provider_and_leaves_it_out_when_unknown() -> None:
    remote = replace(_vpngate_remote(), provider=TABLE.named("protonvpn"))
    d = codec.remote_to_dict(remote)
    assert d is not None and d["provider"]["id"] == "protonvpn"
    assert codec.remote_from_dict(json.loads(json.dumps(d))) == remote
    plain = codec.remote_to_dict(make_remote())
    assert plain is not None and "provider" not in plain
    d["provider"]["audits"] = [{"auditor": "A"}]
    with pytest.raises(codec.CodecError, match="year"):
        codec.remote_from_dict(d)


def test_the_message_names_a_known_operator_and_not_a_self_hosted_one() -> None:
    ef = make_flow(
        remote_ip="219.100.37.226", label=make_label("softether"), remote=_vpngate_remote()
    )
    values = flow_values(ef, Env(PolicyView(), T0))
    assert values["provider_note"] == (
        ", run by VPN Gate (University of Tsukuba, JP, no audit; logs kept ≥3 months),"
    )
    own = replace(_vpngate_remote(), provider=TABLE.named("self-hosted"))
    assert flow_values(replace(ef, remote=own), Env(PolicyView(), T0))["provider_note"] == ""
    assert flow_values(make_flow(), Env(PolicyView(), T0))["provider"] == "an unknown operator"


def _alert() -> Any:
    return replace(make_alert(rule_id="vpn.unexpected"), remote=_vpngate_remote())


def test_every_export_carries_provider_country_groups_audits_and_incidents() -> None:
    alert = replace(_alert(), remote=replace(_vpngate_remote(), provider=TABLE.named("nordvpn")))
    rows = list(csv_lines([alert]))
    rec = dict(zip(HEADER, next(csv.reader(io.StringIO(rows[1]))), strict=True))
    nord = TABLE.named("nordvpn")
    assert nord is not None
    assert (rec["provider"], rec["provider_country"], rec["provider_groups"]) == (
        "NordVPN",
        "PA",
        "",
    )
    assert (rec["provider_audits"], rec["provider_incidents"]) == (
        str(len(nord.audits)),
        str(len(nord.incidents)),
    )
    line = format_rfc5424(alert, hostname="h", procid=1)
    assert 'provider="NordVPN"' in line and 'provider_country="PA"' in line
    assert f'provider_audits="{len(nord.audits)}"' in line
    ecs = ecs_document(alert)["netwatch"]["provider"]
    assert (ecs["name"], ecs["country"], ecs["audit_count"]) == ("NordVPN", "PA", len(nord.audits))
    assert ecs["incidents"][0]["url"].startswith("https://")
    assert json.loads(codec.dumps(alert))["remote"]["provider"]["id"] == "nordvpn"
    bare = make_alert()
    assert "provider=" not in format_rfc5424(bare, hostname="h", procid=1)
    assert "provider" not in ecs_document(bare)["netwatch"]


def test_flow_and_alert_details_show_the_provider_with_sources() -> None:
    ef = make_flow(
        remote_ip="219.100.37.226", label=make_label("softether"), remote=_vpngate_remote()
    )
    text = flow_detail(ef, Rate(), None, (), T0 + 5).plain
    assert "Provider" in text and "University of Tsukuba" in text
    assert "logs kept ≥3 months" in text and "about_abuse.aspx" in text
    assert "audits        none published" in text
    mullvad = replace(_vpngate_remote(), provider=TABLE.named("mullvad"))
    alert_text = alert_detail(replace(_alert(), remote=mullvad), None, T0 + 5).plain
    assert "SE" in alert_text and "14 Eyes" in alert_text and "2023: Swedish police" in alert_text
    assert "X41 D-Sec 2024" in alert_text


def test_the_module_has_no_provider_names_in_code() -> None:
    """The facts are data: the loader names no provider (only the relay lists it treats apart)."""
    source = Path(providers_mod.__file__).read_text(encoding="utf-8")
    for p in TABLE.providers:
        if p.id not in RELAY_LISTS:
            assert f'"{p.id}"' not in source, p.id
    assert parse_ip("219.100.37.226")  # the relay address used above parses
