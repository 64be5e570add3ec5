"""Rule files: TOML in, validated `RuleSet` out, every problem one located line.

A rule file holds `[lists]` (named value lists, referenced as `"@name"` from any file of the
set) and `[[rule]]` tables. Loading checks everything (ids, severities, durations, fields,
operators, placeholders, window settings, Python implementations) and collects every problem
with file, line, rule id and key, like pySigma's validators; nothing is half-loaded.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from netwatch import tomltext
from netwatch.detect.conditions import FieldTable, Problems, compile_node, parse_node
from netwatch.detect.fields import FIELDS, WINDOW_FIELDS, Env, Kind
from netwatch.detect.messages import template_problems
from netwatch.detect.python_rules import PYTHON_RULES
from netwatch.detect.rule import Case, Rule, RuleSet, Window
from netwatch.errors import Location, RuleError, one_line
from netwatch.model import Severity

RULE_KEYS = {
    "id",
    "title",
    "severity",
    "description",
    "tags",
    "identifier",
    "suppress_for",
    "python",
    "when",
    "message",
    "case",
}
CASE_KEYS = {"when", "message", "severity", "window"}
WINDOW_KEYS = {"seconds", "group_by", "having"}
_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*$")
_UNIT = {"s": 1, None: 1, "m": 60, "min": 60, "h": 3600, "d": 86400}

FLOW_TABLE: FieldTable = {n: (f.kind, f.get) for n, f in FIELDS.items()}


def _stat(name: str) -> Callable[[Any, Env], Any]:
    attr = name.split(".", 1)[1]
    return lambda stats, _env: getattr(stats, attr)


WINDOW_TABLE: FieldTable = {n: (Kind.NUM, _stat(n)) for n in WINDOW_FIELDS}


@dataclass(frozen=True, slots=True)
class RuleProblem:
    """One thing wrong with a rule file."""

    location: Location
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.message}"


def parse_duration(value: Any) -> float | None:
    """Seconds from a number or `"90s"`, `"10m"`, `"1h"`, `"2d"`; None when invalid."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value >= 0 else None
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNIT[m.group(2)]
    return None


class _FileCheck:
    """Problems of one file, located by rule id and the rule's line."""

    def __init__(self, file: str, text: str) -> None:
        self.file = file
        self.text = text
        self.problems: list[RuleProblem] = []

    def line_of(self, rule_id: str | None) -> int | None:
        if not rule_id:
            return None
        m = re.search(rf'^\s*id\s*=\s*["\']{re.escape(rule_id)}["\']', self.text, re.MULTILINE)
        return None if m is None else self.text.count("\n", 0, m.start()) + 1

    def add(
        self, rule_id: str | None, key: str | None, message: str, line: int | None = None
    ) -> None:
        shown_id = None if rule_id is None else one_line(rule_id)
        loc = Location(self.file, shown_id, key and one_line(key), line or self.line_of(rule_id))
        self.problems.append(RuleProblem(loc, one_line(message)))


def _strings(raw: Any) -> tuple[str, ...] | None:
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and all(isinstance(x, str) and x for x in raw):
        return tuple(raw)
    return None


def _severity(raw: Any, rid: str, key: str, fc: _FileCheck) -> Severity | None:
    try:
        return Severity(raw)
    except ValueError:
        fc.add(rid, key, f"{raw!r} is not one of {', '.join(s.value for s in Severity)}")
        return None


def _window(raw: Any, rid: str, key: str, fc: _FileCheck) -> Window | None:
    if not isinstance(raw, dict):
        fc.add(rid, key, "must be a table with seconds, group_by, having")
        return None
    for k in sorted(set(raw) - WINDOW_KEYS):
        fc.add(rid, f"{key}.{k}", f"unknown key (expected {', '.join(sorted(WINDOW_KEYS))})")
    seconds = parse_duration(raw.get("seconds"))
    if not seconds:
        fc.add(rid, f"{key}.seconds", "must be a positive duration such as 600 or '1h'")
    group_by = _strings(raw.get("group_by", []) or ["process.name"])
    if group_by is None:
        fc.add(rid, f"{key}.group_by", "must be a list of field names")
    else:
        for g in group_by:
            if g not in FIELDS:
                fc.add(rid, f"{key}.group_by", f"unknown field {g!r}")
    probs = Problems()
    having = parse_node(raw.get("having"), f"{key}.having", WINDOW_TABLE, probs)
    for k, msg in probs.items:
        fc.add(
            rid,
            k,
            msg + (" (window fields: " + ", ".join(WINDOW_FIELDS) + ")" if "field" in k else ""),
        )
    if not seconds or group_by is None or having is None or probs.items:
        return None
    return Window(seconds, group_by, having, compile_node(having))


def _case(
    raw: Mapping[str, Any],
    rid: str,
    key: str,
    fc: _FileCheck,
    lists: Mapping[str, tuple[Any, ...]],
    needs_message: bool,
) -> Case | None:
    bad = len(fc.problems)
    probs = Problems()
    when = parse_node(raw.get("when"), f"{key}when", FLOW_TABLE, probs, lists)
    for k, msg in probs.items:
        fc.add(rid, k, msg)
    window = None
    if "window" in raw:
        window = _window(raw["window"], rid, f"{key}window", fc)
    message = raw.get("message", "")
    if not isinstance(message, str) or (needs_message and not message.strip()):
        fc.add(rid, f"{key}message", "must be a non-empty one-line message")
    elif isinstance(message, str):
        if "\n" in message:
            fc.add(rid, f"{key}message", "must be one line")
        for p in template_problems(message, windowed="window" in raw):
            fc.add(rid, f"{key}message", p)
    severity = None
    if "severity" in raw and key:
        severity = _severity(raw["severity"], rid, f"{key}severity", fc)
    if when is None or len(fc.problems) != bad:
        return None
    return Case(when, compile_node(when), str(message), severity, window)


def _rule(
    raw: Any, index: int, fc: _FileCheck, lists: Mapping[str, tuple[Any, ...]]
) -> Rule | None:
    if not isinstance(raw, dict):
        fc.add(None, f"rule[{index}]", "must be a table ([[rule]])")
        return None
    rid = raw.get("id")
    if not isinstance(rid, str) or not _ID.match(rid):
        line = fc.line_of(rid) if isinstance(rid, str) else None
        fc.add(
            None,
            f"rule[{index}].id",
            f"{rid!r} is not a dotted lower-case id such as 'vpn.unexpected'",
            line,
        )
        return None
    bad = len(fc.problems)
    for k in sorted(set(raw) - RULE_KEYS):
        fc.add(rid, k, f"unknown key (expected one of {', '.join(sorted(RULE_KEYS))})")
    title = raw.get("title")
    if not isinstance(title, str) or not title.strip():
        fc.add(rid, "title", "must be a non-empty string")
    severity = _severity(raw.get("severity"), rid, "severity", fc)
    identifier = _strings(raw.get("identifier", ["process.name", "remote.ip"]))
    if identifier is None:
        fc.add(rid, "identifier", "must be a list of field names")
    else:
        for f in identifier:
            if f not in FIELDS:
                fc.add(rid, "identifier", f"unknown field {f!r}")
    suppress = parse_duration(raw.get("suppress_for", "1h"))
    if suppress is None:
        fc.add(rid, "suppress_for", "must be a duration such as 600, '10m', '1h' or '1d'")
    tags = _strings(raw.get("tags", [])) if raw.get("tags") else ()
    if tags is None:
        fc.add(rid, "tags", "must be a list of strings")
    python = raw.get("python")
    if python is not None and python not in PYTHON_RULES:
        fc.add(
            rid,
            "python",
            f"unknown implementation {python!r} (known: {', '.join(sorted(PYTHON_RULES))})",
        )
    description = raw.get("description", "")
    if not isinstance(description, str):
        fc.add(rid, "description", "must be a string")
    cases: list[Case] = []
    if "case" in raw:
        if "when" in raw or "message" in raw:
            fc.add(rid, "case", "use either when/message or [[rule.case]] tables, not both")
        items = raw["case"]
        if not isinstance(items, list) or not items:
            fc.add(rid, "case", "must be one or more [[rule.case]] tables")
            items = []
        for i, c in enumerate(items):
            key = f"case[{i}]."
            if not isinstance(c, dict):
                fc.add(rid, key[:-1], "must be a table")
                continue
            for k in sorted(set(c) - CASE_KEYS):
                fc.add(
                    rid, key + k, f"unknown key (expected one of {', '.join(sorted(CASE_KEYS))})"
                )
            case = _case(c, rid, key, fc, lists, needs_message=python is None)
            if case is not None:
                cases.append(case)
    elif "when" in raw:
        case = _case(raw, rid, "", fc, lists, needs_message=python is None)
        if case is not None:
            cases.append(case)
    else:
        fc.add(rid, "when", "a rule needs a 'when' condition or [[rule.case]] tables")
    if len(fc.problems) != bad or severity is None or identifier is None or suppress is None:
        return None
    return Rule(
        id=rid,
        title=str(title),
        severity=severity,
        cases=tuple(cases),
        identifier=identifier,
        suppress_for=suppress,
        tags=tags or (),
        description=str(description).strip(),
        python=python,
        location=Location(fc.file, rid, None, fc.line_of(rid)),
    )


def _lists(
    data: Mapping[str, Any],
    fc: _FileCheck,
    into: dict[str, tuple[Any, ...]],
    origin: dict[str, _FileCheck],
) -> None:
    raw = data.get("lists", {})
    if not isinstance(raw, dict):
        fc.add(None, "lists", "must be a table of name = [values]")
        return
    for name, values in raw.items():
        ok = (
            isinstance(values, list)
            and values
            and all(isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in values)
        )
        if not ok:
            fc.add(None, f"lists.{name}", "must be a non-empty list of strings or numbers")
        elif name in into:
            fc.add(None, f"lists.{name}", "defined twice")
        else:
            into[name] = tuple(values)
            origin[name] = fc


def _expand_lists(lists: dict[str, tuple[Any, ...]], origin: dict[str, _FileCheck]) -> None:
    """Replace `"@name"` items inside lists by the named list (one level deep suffices)."""
    for name, values in list(lists.items()):
        out: list[Any] = []
        for v in values:
            if isinstance(v, str) and v.startswith("@"):
                target = lists.get(v[1:])
                if target is None or any(isinstance(t, str) and t.startswith("@") for t in target):
                    origin[name].add(
                        None, f"lists.{name}", f"{v!r} is not a list without references"
                    )
                    continue
                out.extend(target)
            else:
                out.append(v)
        lists[name] = tuple(out)


def check_rule_texts(texts: Iterable[tuple[str, str]]) -> tuple[RuleSet, list[RuleProblem]]:
    """Parse (file name, TOML text) pairs into a rule set and every problem found."""
    problems: list[RuleProblem] = []
    parsed: list[tuple[_FileCheck, dict[str, Any]]] = []
    lists: dict[str, tuple[Any, ...]] = {}
    origin: dict[str, _FileCheck] = {}
    files = []
    for file, text in texts:
        files.append(file)
        fc = _FileCheck(file, text)
        try:
            data = tomltext.parse(text)
        except tomltext.TomlTextError as exc:
            fc.add(None, None, exc.message, exc.line)
            problems.extend(fc.problems)
            continue
        for k in sorted(set(data) - {"rule", "lists"}):
            fc.add(None, k, "unknown top-level key (expected [lists] and [[rule]] tables)")
        _lists(data, fc, lists, origin)
        parsed.append((fc, data))
    _expand_lists(lists, origin)
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for fc, data in parsed:
        items = data.get("rule", [])
        if not isinstance(items, list):
            fc.add(None, "rule", "must be an array of tables ([[rule]])")
            items = []
        for i, raw in enumerate(items):
            rule = _rule(raw, i, fc, lists)
            if rule is None:
                continue
            if rule.id in seen:
                fc.add(rule.id, "id", f"duplicate rule id (first defined in {seen[rule.id]})")
                continue
            seen[rule.id] = fc.file
            rules.append(rule)
        problems.extend(fc.problems)
    return RuleSet(tuple(rules), tuple(files)), problems


def bundled_rule_files() -> list[Path]:
    """The rule files shipped inside the package, in name order."""
    root = resources.files("netwatch.detect") / "rules"
    return sorted(Path(str(p)) for p in root.iterdir() if p.name.endswith(".toml"))


def rule_files(path: Path) -> list[Path]:
    """A file, or every `*.toml` in a directory, in name order."""
    if path.is_dir():
        return sorted(path.glob("*.toml"))
    return [path]


def bundled_lists_file() -> Path:
    """The bundled `[lists]` file that user rule files may refer to."""
    return Path(str(resources.files("netwatch.detect") / "rules" / "lists.toml"))


def check_rule_files(
    paths: Sequence[Path], *, with_bundled_lists: bool = False
) -> tuple[RuleSet, list[RuleProblem]]:
    """Read and check rule files; unreadable files are problems too.

    `with_bundled_lists` makes the bundled shared lists available to user rule files.
    """
    if with_bundled_lists:
        lists = bundled_lists_file()
        paths = [lists, *(p for p in paths if p.resolve() != lists.resolve())]
    texts: list[tuple[str, str]] = []
    unreadable: list[RuleProblem] = []
    for p in paths:
        try:
            texts.append((str(p), p.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            unreadable.append(RuleProblem(Location(str(p)), f"cannot read: {exc}"))
    ruleset, problems = check_rule_texts(texts)
    return ruleset, unreadable + problems


def load_rules(paths: Sequence[Path] | None = None) -> RuleSet:
    """Load the bundled pack (or `paths`); any problem raises one `RuleError` listing all."""
    ruleset, problems = check_rule_files(bundled_rule_files() if paths is None else paths)
    if problems:
        raise RuleError("\nnetwatch: ".join(str(p) for p in problems))
    return ruleset
