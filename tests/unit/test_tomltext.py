"""TOML text: the line of every key (checked against generated files), and the nesting limit."""

from __future__ import annotations

import json
import tomllib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netwatch import tomltext

# Characters that could fool a scanner that ignores strings and comments.
TRICKY = st.text(alphabet="ab =[]{}#.\"'\\\n\t", max_size=12)
KEYS = st.sampled_from(["a", "b-c", "d_1", '"x.y"', "'q r'", '"[t]"', '"#h"'])


def _key(text: str) -> str:
    """The key as tomllib decodes it (quoted keys lose their quotes)."""
    return next(iter(tomllib.loads(f"{text} = 0")))


def _value(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["str", "literal", "multi", "array", "inline", "number"]))
    s = draw(TRICKY)
    if kind == "str":
        return json.dumps(s)
    if kind == "literal":
        return "'" + s.replace("'", "").replace("\n", "") + "'"
    if kind == "multi":
        return '"""\n' + s.replace("\\", "").replace('"', "") + '"""'
    if kind == "array":
        return "[\n  " + json.dumps(s) + ",  # [z] = 1\n  [1, 2],\n]"
    if kind == "inline":
        return "{ k = " + json.dumps(s) + ", n = [ { m = 1 } ] }"
    return "42"


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, dict[str, int]]:
    """A TOML document and the line of each key path in it."""
    lines: list[str] = ["# a comment [not.a.table]"]
    expected: dict[str, int] = {}
    counts: dict[str, int] = {}
    for t in range(draw(st.integers(1, 4))):
        name = f"t{t}"
        if draw(st.booleans()):
            counts[name] = counts.get(name, -1) + 1
            lines.append(f"[[{name}]]  # array")
            table = f"{name}[{counts[name]}]"
            expected.setdefault(name, len(lines))
        else:
            lines.append(f"[ {name} ]")
            table = name
        expected[table] = len(lines)
        used: set[str] = set()
        for key in draw(st.lists(KEYS, max_size=4, unique=True)):
            decoded = _key(key)
            if decoded in used:
                continue
            used.add(decoded)
            lines.append(f"{key} = {_value(draw)}")
            expected[f"{table}.{decoded}"] = len(lines)
            lines[-1:] = lines[-1].split("\n")
    return "\n".join(lines) + "\n", expected


@settings(max_examples=300)
@given(documents())
def test_key_lines_match_where_each_key_is_written(doc: tuple[str, dict[str, int]]) -> None:
    text, expected = doc
    tomllib.loads(text)  # the generator writes valid TOML
    assert tomltext.key_lines(text) == expected


def test_key_lines_of_dotted_and_quoted_keys() -> None:
    text = '[policy.rules]\n"vpn.unexpected" = "log"\na.b = 1\n[[x]]\n[[x]]\ny = 2\n'
    lines = tomltext.key_lines(text)
    assert lines["policy.rules.vpn.unexpected"] == 2
    assert lines["policy.rules.a.b"] == 3
    assert (lines["x[0]"], lines["x[1]"], lines["x[1].y"]) == (4, 5, 6)
    # A key inside an inline value is located at the line of the key that holds it.
    assert tomltext.line_of(lines, "x[1].y[3].z") == 6
    assert tomltext.line_of(lines, "nowhere.at_all") is None


@pytest.mark.parametrize("depth", [tomltext.MAX_DEPTH + 1, 5_000])
def test_deep_nesting_is_refused_with_its_line(depth: int) -> None:
    text = "[daemon]\n\ninterval = " + "[" * depth + "]" * depth + "\n"
    with pytest.raises(tomltext.TomlTextError) as info:
        tomltext.parse(text)
    assert info.value.line == 3
    assert f"more than {tomltext.MAX_DEPTH} levels" in info.value.message


def test_nesting_up_to_the_limit_parses() -> None:
    d = tomltext.MAX_DEPTH
    assert tomltext.parse("x = " + "[" * d + "]" * d)["x"] is not None


def test_brackets_in_strings_and_comments_do_not_count() -> None:
    deep = "[" * 500
    text = f'x = "{deep}"\ny = \'{deep}\'\n# {deep}\nz = """\n{deep}\n"""\n'
    assert tomltext.parse(text)["x"] == deep


@settings(max_examples=500)
@given(st.text(alphabet="ab=[]{}#\"'\\\n .,0", max_size=80))
def test_scanning_any_text_never_crashes(text: str) -> None:
    try:
        tomltext.parse(text)
    except tomltext.TomlTextError:
        return
    tomltext.key_lines(text)
