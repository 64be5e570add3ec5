"""Rule files: every problem is one located line; the condition language means what it says."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch.detect.conditions import Problems, compile_node, parse_node
from netwatch.detect.fields import Env
from netwatch.detect.loader import FLOW_TABLE, check_rule_texts, parse_duration
from netwatch.detect.policy import PolicyView
from netwatch.model import Direction, Transport
from tests.builders import T0, make_flow, make_process

BROKEN = Path(__file__).resolve().parent.parent / "data" / "rules_broken"
ENV = Env(PolicyView(), T0)

# (file, rule id or None, key fragment, message fragment): one per expected problem.
EXPECTED = [
    ("01_not_toml.toml", None, None, "not valid TOML"),
    ("02_problems.toml", "broken.unknown_field", "when.field", "unknown field 'process.colour'"),
    ("02_problems.toml", "broken.wrong_operator", "when.glob", "not allowed for number field"),
    ("02_problems.toml", "broken.values", "when.all[0].regex", "not a valid regular expression"),
    ("02_problems.toml", "broken.values", "when.all[1].in_cidr", "not an address or network"),
    ("02_problems.toml", "broken.meta", "severity", "'urgent' is not one of"),
    ("02_problems.toml", "broken.meta", "suppress_for", "must be a duration"),
    ("02_problems.toml", "broken.meta", "message", "unknown placeholder {colour}"),
    ("02_problems.toml", None, "rule[4].id", "'NoNamespace' is not a dotted"),
    ("02_problems.toml", "broken.keys", "colour", "unknown key"),
    ("02_problems.toml", "broken.keys", "when.in", "unknown list '@no_such_list'"),
    ("02_problems.toml", "broken.window_field", "when.field", "window's having"),
    ("02_problems.toml", "broken.python", "python", "unknown implementation 'no_such_rule'"),
    ("02_problems.toml", "broken.python", "message", "{peers} needs a window"),
    ("02_problems.toml", "broken.two_ops", "when", "exactly one operator"),
    ("02_problems.toml", "broken.fine", "id", "duplicate rule id"),
]


def test_rules_check_broken_dir_gives_one_located_line_per_problem(
    netwatch_cmd: list[str], repo_root: Path
) -> None:
    res = subprocess.run(
        [*netwatch_cmd, "rules", "check", "tests/data/rules_broken"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo_root,
    )
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == len(EXPECTED), res.stderr
    for line, (file, rule_id, key, fragment) in zip(lines, EXPECTED, strict=True):
        assert line.startswith(f"tests/data/rules_broken/{file}"), line
        if rule_id is not None:
            assert re.match(rf"^\S+:\d+: rule {re.escape(rule_id)}: ", line), line
        if key is not None:
            assert f": {key}: " in line, line
        assert fragment in line, line


def test_rules_check_bundled_pack_passes(netwatch_cmd: list[str], repo_root: Path) -> None:
    res = subprocess.run(
        [*netwatch_cmd, "rules", "check"], capture_output=True, text=True, timeout=60, cwd=repo_root
    )
    assert res.returncode == 0, res.stderr
    assert "rules OK" in res.stdout


def test_rules_check_missing_path_is_usage_error(netwatch_cmd: list[str], tmp_path: Path) -> None:
    res = subprocess.run(
        [*netwatch_cmd, "rules", "check", str(tmp_path / "nope.toml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1


def test_user_rule_file_may_use_bundled_lists(netwatch_cmd: list[str], tmp_path: Path) -> None:
    rule = tmp_path / "mine.toml"
    rule.write_text(
        '[[rule]]\nid = "my.softether"\ntitle = "SoftEther"\nseverity = "low"\n'
        'message = "{process} runs"\n'
        'when = { field = "process.name", in = "@softether_processes" }\n'
    )
    res = subprocess.run(
        [*netwatch_cmd, "rules", "check", str(rule)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr


def test_rules_list_shows_policy_action(netwatch_cmd: list[str], tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('[policy.rules]\n"process.first_connection" = "ignore"\n')
    res = subprocess.run(
        [*netwatch_cmd, "rules", "list", "--config", str(cfg)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    row = next(
        line for line in res.stdout.splitlines() if line.startswith("process.first_connection")
    )
    assert " ignore " in row
    assert any(
        line.startswith("vpngate.relay_mode") and " alert " in line
        for line in res.stdout.splitlines()
    )


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [(90, 90.0), ("90s", 90.0), ("10m", 600.0), ("1h", 3600.0), ("2d", 172800.0), ("1.5h", 5400.0)],
)
def test_durations(raw: object, seconds: float) -> None:
    assert parse_duration(raw) == seconds


@pytest.mark.parametrize("raw", ["soon", -5, True, None, "1w", ""])
def test_bad_durations(raw: object) -> None:
    assert parse_duration(raw) is None


def _pred(raw: dict[str, Any]) -> Any:
    probs = Problems()
    node = parse_node(raw, "when", FLOW_TABLE, probs, {"ports": (443, 992)})
    assert node is not None, probs.items
    return compile_node(node)


CURL = make_flow(process=make_process("Curl"), sni="WWW.VPNGATE.NET", remote_port=443)
LISTEN = make_flow(remote_ip=None, local_ip="0.0.0.0", local_port=992, direction=Direction.LISTEN)


@pytest.mark.parametrize(
    ("raw", "subject", "expected"),
    [
        ({"field": "process.name", "eq": "curl"}, CURL, True),
        ({"field": "process.name", "ne": "curl"}, CURL, False),
        ({"field": "process.name", "in": ["wget", "CURL"]}, CURL, True),
        ({"field": "sni", "domain": "vpngate.net"}, CURL, True),
        ({"field": "sni", "domain": "gate.net"}, CURL, False),
        ({"field": "sni", "glob": "www.*.net"}, CURL, True),
        ({"field": "sni", "regex": r"^www\.vpn"}, CURL, True),
        ({"field": "sni", "suffix": ".net"}, CURL, True),
        ({"field": "sni", "contains": "gate"}, CURL, True),
        ({"field": "dns_name", "exists": False}, CURL, True),
        ({"field": "dns_name", "eq": "x"}, CURL, False),
        ({"field": "remote.port", "between": [400, 500]}, CURL, True),
        ({"field": "remote.port", "in": "@ports"}, CURL, True),
        ({"field": "remote.port", "gt": 443}, CURL, False),
        ({"field": "remote.ip", "in_cidr": "90.189.0.0/16"}, CURL, True),
        ({"field": "remote.ip", "in_cidr": "2001:db8::/32"}, CURL, False),
        ({"field": "remote.ip", "exists": True}, LISTEN, False),
        ({"field": "local.port", "in": "@ports"}, LISTEN, True),
        ({"field": "remote.port", "ne": 1}, LISTEN, False),
        ({"field": "names", "has_domain": "vpngate.net"}, CURL, True),
        ({"field": "transport", "eq": Transport.TCP.value}, CURL, True),
        ({"not": {"field": "transport", "eq": "tcp"}}, CURL, False),
        (
            {"any": [{"field": "transport", "eq": "udp"}, {"field": "sni", "exists": True}]},
            CURL,
            True,
        ),
        (
            {"all": [{"field": "transport", "eq": "udp"}, {"field": "sni", "exists": True}]},
            CURL,
            False,
        ),
        ({"field": "remote.foreign", "eq": True}, CURL, True),
        ({"field": "local.loopback", "eq": False}, LISTEN, True),
    ],
)
def test_condition_semantics(raw: dict[str, Any], subject: Any, expected: bool) -> None:
    assert _pred(raw)(subject, ENV) is expected


leaf_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.lists(st.one_of(st.integers(), st.text(max_size=10)), max_size=4),
)
conditions = st.recursive(
    st.dictionaries(
        st.sampled_from(
            ["field", "eq", "in", "glob", "regex", "between", "in_cidr", "exists", "x"]
        ),
        st.one_of(leaf_values, st.sampled_from(list(FLOW_TABLE))),
        max_size=3,
    ),
    lambda children: st.one_of(
        st.dictionaries(
            st.sampled_from(["all", "any"]), st.lists(children, max_size=3), max_size=1
        ),
        st.builds(lambda c: {"not": c}, children),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(conditions)
def test_parse_node_never_crashes(raw: Any) -> None:
    probs = Problems()
    node = parse_node(raw, "when", FLOW_TABLE, probs)
    if node is not None:
        compile_node(node)(CURL, ENV)
        compile_node(node)(LISTEN, ENV)
    else:
        assert probs.items


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_rule_text_parser_never_crashes(text: str) -> None:
    check_rule_texts([("fuzz.toml", text)])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "[[rule]]\n",
                'id = "a.b"\n',
                'title = "t"\n',
                'severity = "low"\n',
                'message = "{process}"\n',
                'when = { field = "sni", eq = "x" }\n',
                "[[rule.case]]\n",
                "[rule.case.window]\n",
                "seconds = 5\n",
                'having = { field = "window.peers", ge = 2 }\n',
                "[lists]\n",
                'l = ["@l"]\n',
                'python = "new_country"\n',
            ]
        ),
        max_size=14,
    )
)
def test_rule_file_fragments_never_crash(parts: list[str]) -> None:
    check_rule_texts([("fuzz.toml", "".join(parts))])


@pytest.mark.parametrize("message", ['"{no\\nsuch}"', '"{x\\u0000y}"', '"{a\\tb}"'])
def test_a_problem_quoting_a_control_character_stays_one_located_line(
    tmp_path: Path, message: str
) -> None:
    """Found by bench/fuzz.py: a placeholder holding a newline split the problem in two."""
    from netwatch.detect.loader import load_rules
    from netwatch.errors import RuleError

    path = tmp_path / "r.toml"
    path.write_text(
        f'[[rule]]\nid = "x.y"\nseverity = "low"\ntitle = "t"\nmessage = {message}\n'
        'when = { field = "transport", eq = "tcp" }\n'
    )
    with pytest.raises(RuleError) as info:
        load_rules([path])
    lines = str(info.value).splitlines()
    assert any("placeholder" in line for line in lines), lines
    assert all(str(path) in line for line in lines), lines
