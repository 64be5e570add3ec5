"""The condition language: a small predicate tree in TOML, checked and compiled at load time.

A condition is `{all = [...]}`, `{any = [...]}`, `{not = {...}}` or a leaf
`{field = "sni", domain = ["vpngate.net"]}` with exactly one operator. Operators depend on
the field's kind (see `OPS`); a value written `"@name"` refers to a shared list from a rule
file's `[lists]` table. Parsing reports every problem with its key path (`when.any[2].glob`)
and never raises; compiling yields a plain closure, so evaluation costs one call per node.
String comparisons ignore case. Regexes run on names strangers choose (SNI, Host, DNS), so they
are compiled with RE2 (google-re2), whose matching time is linear in the name's length: a
pattern like `(a+)+$` cannot backtrack for minutes on a hostile name. RE2 has no
backreferences or lookaround; such patterns are refused at load with the rule's location.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

from netwatch.detect.fields import Env, Kind
from netwatch.model import Evidence

Test = Callable[[Any], bool]
Pred = Callable[[Any, Env], bool]
FieldTable = Mapping[str, tuple[Kind, Callable[[Any, Env], Any]]]

OPS: dict[Kind, tuple[str, ...]] = {
    Kind.STR: (
        "eq",
        "ne",
        "in",
        "not_in",
        "glob",
        "domain",
        "prefix",
        "suffix",
        "contains",
        "regex",
        "exists",
    ),
    Kind.STRS: ("has", "has_glob", "has_domain", "exists"),
    Kind.NUM: ("eq", "ne", "in", "not_in", "gt", "ge", "lt", "le", "between", "exists"),
    Kind.BOOL: ("eq", "exists"),
    Kind.IP: ("eq", "ne", "in_cidr", "not_in_cidr", "exists"),
}
"""Operators allowed for each kind of field."""

_ALL_OPS = frozenset(op for ops in OPS.values() for op in ops)


@dataclass(frozen=True, slots=True)
class Leaf:
    """One test of one field."""

    field: str
    op: str
    value: Any
    get: Callable[[Any, Env], Any]
    test: Test


@dataclass(frozen=True, slots=True)
class Group:
    """`all` or `any` of several conditions, or `not` of one."""

    kind: str
    children: tuple[Node, ...]


Node = Leaf | Group


class Problems:
    """Collects (key path, message) pairs while conditions are parsed."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, key: str, message: str) -> None:
        """Record one problem at `key`."""
        self.items.append((key, message))


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _strings(value: Any, key: str, probs: Problems) -> list[str] | None:
    items = _as_list(value)
    if not items or not all(isinstance(v, str) for v in items):
        probs.add(key, "must be a string or a non-empty list of strings")
        return None
    return [v.lower() for v in items]


def _numbers(value: Any, key: str, probs: Problems) -> list[float] | None:
    items = _as_list(value)
    if not items or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        probs.add(key, "must be a number or a non-empty list of numbers")
        return None
    return [float(v) for v in items]


def _domain_match(name: str, domains: frozenset[str]) -> bool:
    """Whether `name` is one of `domains` or below one, by whole DNS labels."""
    name = name.lower().rstrip(".")
    if name in domains:
        return True
    dot = name.find(".")
    while dot != -1:
        if name[dot + 1 :] in domains:
            return True
        dot = name.find(".", dot + 1)
    return False


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.case_sensitive = False
_RE2_OPTIONS.log_errors = False  # the error is reported as a located problem instead


def _re2_reason(exc: Exception) -> str:
    """RE2's error text (it arrives as bytes)."""
    reason = exc.args[0] if exc.args else exc
    return reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)


def _str_test(op: str, value: Any, key: str, probs: Problems) -> Test | None:
    if op == "regex":
        if not isinstance(value, str):
            probs.add(key, "must be a regular expression string")
            return None
        try:
            rx = re2.compile(value, _RE2_OPTIONS)
        except re2.error as exc:
            probs.add(key, f"is not a valid regular expression (RE2 syntax): {_re2_reason(exc)}")
            return None
        return lambda v: v is not None and rx.search(v) is not None
    vals = _strings(value, key, probs)
    if vals is None:
        return None
    one = vals[0]
    members = frozenset(vals)
    if op in ("eq", "ne") and len(vals) != 1:
        probs.add(key, f"'{op}' takes one string (use 'in' for several)")
        return None
    tests: dict[str, Test] = {
        "eq": lambda v: v is not None and v.lower() == one,
        "ne": lambda v: v is not None and v.lower() != one,
        "in": lambda v: v is not None and v.lower() in members,
        "not_in": lambda v: v is not None and v.lower() not in members,
        "glob": lambda v: v is not None and any(fnmatch.fnmatchcase(v.lower(), g) for g in vals),
        "domain": lambda v: v is not None and _domain_match(v, members),
        "prefix": lambda v: v is not None and v.lower().startswith(tuple(vals)),
        "suffix": lambda v: v is not None and v.lower().endswith(tuple(vals)),
        "contains": lambda v: v is not None and any(s in v.lower() for s in vals),
    }
    return tests[op]


def _strs_test(op: str, value: Any, key: str, probs: Problems) -> Test | None:
    vals = _strings(value, key, probs)
    if vals is None:
        return None
    members = frozenset(vals)
    tests: dict[str, Test] = {
        "has": lambda v: any(x.lower() in members for x in v or ()),
        "has_glob": lambda v: any(fnmatch.fnmatchcase(x.lower(), g) for x in v or () for g in vals),
        "has_domain": lambda v: any(_domain_match(x, members) for x in v or ()),
    }
    return tests[op]


def _num_test(op: str, value: Any, key: str, probs: Problems) -> Test | None:
    vals = _numbers(value, key, probs)
    if vals is None:
        return None
    if op == "between":
        if len(vals) != 2 or vals[0] > vals[1]:
            probs.add(key, "must be [low, high] with low <= high")
            return None
        lo, hi = vals
        return lambda v: v is not None and lo <= v <= hi
    if op in ("in", "not_in"):
        members = frozenset(vals)
        if op == "in":
            return lambda v: v is not None and v in members
        return lambda v: v is not None and v not in members
    if len(vals) != 1:
        probs.add(key, f"'{op}' takes one number")
        return None
    n = vals[0]
    tests: dict[str, Test] = {
        "eq": lambda v: v is not None and v == n,
        "ne": lambda v: v is not None and v != n,
        "gt": lambda v: v is not None and v > n,
        "ge": lambda v: v is not None and v >= n,
        "lt": lambda v: v is not None and v < n,
        "le": lambda v: v is not None and v <= n,
    }
    return tests[op]


def _ip_test(op: str, value: Any, key: str, probs: Problems) -> Test | None:
    items = _as_list(value)
    nets = []
    for item in items:
        try:
            nets.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            probs.add(key, f"{item!r} is not an address or network")
            return None
    if not nets or (op in ("eq", "ne") and len(nets) != 1):
        probs.add(key, "needs one address" if op in ("eq", "ne") else "needs networks")
        return None

    if len(nets) == 1:
        net = nets[0]

        def inside(v: Any) -> bool:
            return v.version == net.version and v in net

    else:

        def inside(v: Any) -> bool:
            return any(v.version == n.version and v in n for n in nets)

    tests: dict[str, Test] = {
        "eq": lambda v: v is not None and inside(v),
        "ne": lambda v: v is not None and not inside(v),
        "in_cidr": lambda v: v is not None and inside(v),
        "not_in_cidr": lambda v: v is not None and not inside(v),
    }
    return tests[op]


def _leaf(raw: dict[str, Any], key: str, fields: FieldTable, probs: Problems) -> Leaf | None:
    name = raw.get("field")
    ops = [k for k in raw if k != "field"]
    if not isinstance(name, str):
        probs.add(f"{key}.field", "must name a field (see `netwatch rules list --fields`)")
        return None
    if name not in fields:
        hint = (
            " (window.* fields belong in a window's having)" if name.startswith("window.") else ""
        )
        probs.add(f"{key}.field", f"unknown field {name!r}{hint}")
        return None
    kind, getter = fields[name]
    unknown = [o for o in ops if o not in _ALL_OPS]
    if unknown:
        probs.add(
            f"{key}.{unknown[0]}", f"unknown operator (allowed for {name}: {', '.join(OPS[kind])})"
        )
        return None
    if len(ops) != 1:
        probs.add(key, f"a leaf needs exactly one operator, got {len(ops)}")
        return None
    op = ops[0]
    if op not in OPS[kind]:
        probs.add(
            f"{key}.{op}", f"not allowed for {kind.value} field {name} (use {', '.join(OPS[kind])})"
        )
        return None
    value = raw[op]
    if op == "exists":
        if not isinstance(value, bool):
            probs.add(f"{key}.exists", "must be true or false")
            return None
        want = value
        return Leaf(name, op, value, getter, lambda v: (v is not None and v != ()) == want)
    maker = {
        Kind.STR: _str_test,
        Kind.STRS: _strs_test,
        Kind.NUM: _num_test,
        Kind.IP: _ip_test,
        Kind.BOOL: _bool_test,
    }[kind]
    test = maker(op, value, f"{key}.{op}", probs)
    return None if test is None else Leaf(name, op, value, getter, test)


def _bool_test(_op: str, value: Any, key: str, probs: Problems) -> Test | None:
    if not isinstance(value, bool):
        probs.add(key, "must be true or false")
        return None
    return lambda v: v is not None and bool(v) == value


def resolve_lists(
    value: Any, lists: Mapping[str, tuple[Any, ...]], key: str, probs: Problems
) -> Any:
    """Replace `"@name"` (or list items that are) with the named shared list."""
    if isinstance(value, str) and value.startswith("@"):
        if value[1:] not in lists:
            probs.add(key, f"unknown list {value!r}")
            return None
        return list(lists[value[1:]])
    if isinstance(value, list):
        out: list[Any] = []
        for item in value:
            resolved = resolve_lists(item, lists, key, probs)
            if resolved is None:
                return None
            out.extend(resolved if isinstance(item, str) and item.startswith("@") else [resolved])
        return out
    return value


MAX_DEPTH = 32
"""Conditions nested deeper than this (`all` in `any` in `not` ...) are refused at load:
parsing, compiling and explaining recurse once per level, and no real rule needs more."""


def parse_node(
    raw: Any,
    key: str,
    fields: FieldTable,
    probs: Problems,
    lists: Mapping[str, tuple[Any, ...]] | None = None,
    depth: int = 1,
) -> Node | None:
    """Parse one condition; on problems, record them and return None."""
    if depth > MAX_DEPTH:
        probs.add(key, f"conditions nested more than {MAX_DEPTH} levels deep")
        return None
    if not isinstance(raw, dict) or not raw:
        probs.add(
            key, "must be a table: {all = [...]}, {any = [...]}, {not = {...}} or a field test"
        )
        return None
    groups = [k for k in ("all", "any", "not") if k in raw]
    if groups:
        if len(raw) != 1:
            probs.add(key, f"'{groups[0]}' must be the only key of its table")
            return None
        g = groups[0]
        if g == "not":
            child = parse_node(raw["not"], f"{key}.not", fields, probs, lists, depth + 1)
            return None if child is None else Group("not", (child,))
        items = raw[g]
        if not isinstance(items, list) or not items:
            probs.add(f"{key}.{g}", "must be a non-empty list of conditions")
            return None
        children = [
            parse_node(c, f"{key}.{g}[{i}]", fields, probs, lists, depth + 1)
            for i, c in enumerate(items)
        ]
        if any(c is None for c in children):
            return None
        return Group(g, tuple(c for c in children if c is not None))
    if lists:
        raw = {
            k: (v if k == "field" else resolve_lists(v, lists, f"{key}.{k}", probs))
            for k, v in raw.items()
        }
        if any(v is None for v in raw.values()):
            return None
    return _leaf(raw, key, fields, probs)


def compile_node(node: Node) -> Pred:
    """Turn a parsed condition into one closure `(subject, env) -> bool`."""
    if isinstance(node, Leaf):
        get, test = node.get, node.test
        return lambda s, env: test(get(s, env))
    preds = tuple(compile_node(c) for c in node.children)
    if node.kind == "not":
        p = preds[0]
        return lambda s, env: not p(s, env)
    # Plain loops: about twice as fast as all()/any() over a generator (bench/detect.py).
    if node.kind == "all":

        def all_of(s: Any, env: Env) -> bool:
            for p in preds:  # noqa: SIM110  # a loop beats all(<generator>) on the hot path
                if not p(s, env):
                    return False
            return True

        return all_of

    def any_of(s: Any, env: Env) -> bool:
        for p in preds:  # noqa: SIM110  # a loop beats any(<generator>) on the hot path
            if p(s, env):
                return True
        return False

    return any_of


def holds(node: Node, subject: Any, env: Env) -> bool:
    """Evaluate a parsed condition directly (for explaining matches; no compiling)."""
    if isinstance(node, Leaf):
        return node.test(node.get(subject, env))
    if node.kind == "not":
        return not holds(node.children[0], subject, env)
    if node.kind == "all":
        return all(holds(c, subject, env) for c in node.children)
    return any(holds(c, subject, env) for c in node.children)


def _show(value: Any) -> str:
    if value is None or value == ():
        return "(none)"
    if isinstance(value, tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


def explain(node: Node, subject: Any, env: Env) -> list[Evidence]:
    """The leaves that made a matching condition true, with the values they saw."""
    if isinstance(node, Leaf):
        value = node.get(subject, env)
        if not node.test(value):
            return []
        return [Evidence(node.field, _show(value))]
    if node.kind == "not":
        return []
    out: list[Evidence] = []
    for child in node.children:
        if holds(child, subject, env):
            out.extend(explain(child, subject, env))
            if node.kind == "any":
                break
    return out


def fields_used(node: Node) -> set[str]:
    """Every field a condition reads."""
    if isinstance(node, Leaf):
        return {node.field}
    return set().union(*(fields_used(c) for c in node.children))
