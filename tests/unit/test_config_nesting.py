"""Deeply nested config values and rule conditions: one located line and exit 1, not exit 70."""

from __future__ import annotations

from pathlib import Path

import pytest

from netwatch.config import load_config
from netwatch.detect.conditions import MAX_DEPTH
from netwatch.detect.loader import check_rule_texts
from netwatch.errors import ConfigError
from tests.conftest import run

HEAD = """[[rule]]
id = "deep.rule"
title = "deep"
severity = "low"
message = "deep"
"""


def test_config_value_5000_arrays_deep_is_one_located_line(
    netwatch_cmd: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "config.toml"
    path.write_text("[daemon]\ninterval = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match=rf"^{path}:2: values nested more than \d+ levels"):
        load_config(path)
    res = run([*netwatch_cmd, "rules", "list", "--config", str(path)])
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith(f"netwatch: {path}:2: values nested more than")
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def _inline_all(depth: int) -> str:
    node = '{ field = "sni", eq = "x" }'
    for _ in range(depth):
        node = "{ all = [" + node + "] }"
    return node


def test_rule_with_400_inline_nested_all_is_one_located_line(
    netwatch_cmd: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(HEAD + f"when = {_inline_all(400)}\n")
    res = run([*netwatch_cmd, "rules", "check", str(path)])
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith(f"{path}:6: values nested more than"), res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def _table_all(depth: int) -> str:
    """`all` nested `depth` deep written as [[rule.when.all.all...]] headers: no inline value
    is deep, so only the condition parser's own limit can stop it."""
    headers = "".join(f"[[rule.when{'.all' * d}]]\n" for d in range(1, depth + 1))
    return headers + 'field = "sni"\neq = "x"\n'


def test_rule_with_400_table_nested_all_is_one_located_line(
    netwatch_cmd: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "deep.toml"
    path.write_text(HEAD + _table_all(400))
    res = run([*netwatch_cmd, "rules", "check", str(path)])
    assert res.returncode == 1, res.stderr
    assert res.stderr.startswith(f"{path}:2: rule deep.rule: when.all[0].all[0]"), res.stderr
    assert f"nested more than {MAX_DEPTH} levels deep" in res.stderr
    assert res.stderr.count("\n") == 1 and "Traceback" not in res.stderr


def test_conditions_up_to_the_limit_load() -> None:
    ok, problems = check_rule_texts([("ok.toml", HEAD + _table_all(MAX_DEPTH - 1))])
    assert problems == [] and ok.ids == ("deep.rule",)
    _, problems = check_rule_texts([("deep.toml", HEAD + _table_all(MAX_DEPTH))])
    assert [p.message for p in problems] == [f"conditions nested more than {MAX_DEPTH} levels deep"]
