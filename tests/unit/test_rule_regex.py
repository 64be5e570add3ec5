"""Rule regexes run on names strangers choose: linear-time matching, RE2 syntax checked at load."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from netwatch.detect.loader import check_rule_texts

REPO = Path(__file__).resolve().parent.parent.parent

RULE = """[[rule]]
id = "test.regex"
title = "regex"
severity = "low"
message = "{{sni}}"
when = {{ field = "sni", regex = '{pattern}' }}
"""

# Loads a rule with a catastrophic-backtracking pattern and matches it against a 50,000
# character hostile SNI; with backtracking regexes this takes longer than the universe.
HOSTILE = textwrap.dedent(
    """
    import sys
    from netwatch.detect.fields import Env
    from netwatch.detect.loader import check_rule_texts
    from netwatch.detect.policy import PolicyView
    from tests.builders import T0, make_flow

    rules, problems = check_rule_texts([("r.toml", sys.argv[1])])
    assert not problems, problems
    test = rules.rules[0].cases[0].pred
    env = Env(PolicyView(), T0)
    print(test(make_flow(sni="a" * 50_000 + "!"), env), test(make_flow(sni="a" * 50_000), env))
    """
)


def test_nested_quantifier_on_a_long_hostile_name_finishes() -> None:
    res = subprocess.run(
        [sys.executable, "-c", HOSTILE, RULE.format(pattern="(a+)+$")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,  # generous: RE2 takes milliseconds; a backtracking engine never finishes
        check=False,
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "True"]


def test_patterns_re2_cannot_run_are_located_problems() -> None:
    for pattern in (r"(a)\1", "(?=vpn)vpn", "([a-z"):
        _, problems = check_rule_texts([("r.toml", RULE.format(pattern=pattern))])
        assert len(problems) == 1, (pattern, problems)
        assert str(problems[0]).startswith("r.toml:2: rule test.regex: when.regex: ")
        assert "is not a valid regular expression (RE2 syntax)" in problems[0].message


def test_regex_ignores_case_like_every_string_test() -> None:
    rules, problems = check_rule_texts([("r.toml", RULE.format(pattern=r"^www\.VPN"))])
    assert not problems
    from netwatch.detect.fields import Env
    from netwatch.detect.policy import PolicyView
    from tests.builders import T0, make_flow

    test = rules.rules[0].cases[0].pred
    env = Env(PolicyView(), T0)
    assert test(make_flow(sni="WWW.vpngate.net"), env)
    assert not test(make_flow(sni="x.www.vpngate.net"), env)
    assert not test(make_flow(sni=None), env)
