"""Jurisdiction groups are data: the bundled table, validation, and located errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from netwatch.enrich.jurisdiction import bundled, load, parse
from netwatch.errors import DataFileError


def test_bundled_groups_match_the_commonly_cited_lists() -> None:
    table = bundled()
    names = [g.name for g in table.groups]
    assert names == ["5 Eyes", "9 Eyes", "14 Eyes"]
    five, nine, fourteen = (g.members for g in table.groups)
    assert five == {"US", "GB", "CA", "AU", "NZ"}
    assert nine - five == {"DK", "FR", "NL", "NO"}
    assert fourteen - nine == {"DE", "BE", "IT", "ES", "SE"}
    assert all(g.sources for g in table.groups)


@pytest.mark.parametrize(
    ("country", "groups"),
    [
        ("US", ("5 Eyes", "9 Eyes", "14 Eyes")),
        ("gb", ("5 Eyes", "9 Eyes", "14 Eyes")),
        ("NO", ("9 Eyes", "14 Eyes")),
        ("SE", ("14 Eyes",)),
        ("RU", ()),
        ("UK", ()),  # the United Kingdom is GB
        (None, ()),
    ],
)
def test_country_to_groups(country: str | None, groups: tuple[str, ...]) -> None:
    assert bundled().of(country) == groups


def test_a_replacement_file_is_used(tmp_path: Path) -> None:
    f = tmp_path / "j.toml"
    f.write_text('[[group]]\nname = "Test"\nmembers = ["JP"]\n', encoding="utf-8")
    assert load(f).of("JP") == ("Test",)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("", "group"),
        ('[[group]]\nmembers = ["US"]\n', "group[0].name"),
        ('[[group]]\nname = "x"\n', "group[0].members"),
        ('[[group]]\nname = "x"\nmembers = ["US", "UKR"]\n', "group[0].members[1]"),
        ('[[group]]\nname = "x"\nmembers = ["US"]\nsources = "u"\n', "group[0].sources"),
        (
            '[[group]]\nname = "x"\nmembers = ["US"]\n[[group]]\nname = "x"\nmembers = ["GB"]\n',
            "group[1]",
        ),
        ("not toml [", "not valid TOML"),
    ],
)
def test_bad_files_give_one_located_error(tmp_path: Path, text: str, where: str) -> None:
    f = tmp_path / "j.toml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(DataFileError) as err:
        load(f)
    assert str(err.value).startswith(str(f))
    assert where in str(err.value)
    assert "\n" not in str(err.value)


def test_parse_rejects_non_table_groups() -> None:
    with pytest.raises(DataFileError, match="must be a table"):
        parse({"group": ["x"]}, "inline")


def test_a_file_nested_beyond_the_recursion_limit_is_one_located_line(tmp_path: Path) -> None:
    """tomllib recurses per nested array: a hostile replacement file is a DataFileError that
    names the file, not a RecursionError traceback (the provider file's loader had this)."""
    path = tmp_path / "deep.toml"
    path.write_text("x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(DataFileError) as err:
        load(path)
    assert str(path) in str(err.value) and "nested too deeply" in str(err.value)
