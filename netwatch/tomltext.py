"""TOML text beyond what tomllib gives: the line of each key, and a nesting limit.

tomllib returns plain dicts without positions, and recurses once per nesting level, so a
value nested a few hundred arrays deep ends in `RecursionError`. `parse` first scans the
text (strings, comments and brackets only: the grammar a line number needs), refuses values
nested more than `MAX_DEPTH` deep with the line where that happens, then parses with tomllib;
`key_lines` maps each key path (`policy.expected_vpn[1].protocols`, `daemon.interval`) to
the line that sets it. Imports nothing from the rest of netwatch.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 100
"""Arrays and inline tables nested deeper than this are refused (tomllib needs about three
Python frames per level; Python's default limit is 1,000 frames)."""


class TomlTextError(ValueError):
    """Text that is not TOML netwatch reads; `line` is where, when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.line = line


@dataclass(frozen=True, slots=True)
class _Statement:
    """The start of a `[table]`, `[[array]]` or `key = value` line at the top level."""

    line: int
    text: str
    """A header's whole line, or a key's text up to its `=`."""
    header: bool


@dataclass(slots=True)
class _Scan:
    statements: list[_Statement]
    too_deep: int | None = None
    """The first line where nesting passes `MAX_DEPTH`."""


def _string_end(text: str, i: int) -> int:
    """Index just past the string that starts at `i` (or where the text ends if unclosed)."""
    quote = text[i]
    escapes = quote == '"'
    if text.startswith(quote * 3, i):
        j = i + 3
        while j < len(text) and not text.startswith(quote * 3, j):
            j += 2 if escapes and text[j] == "\\" else 1
        j += 3
        # Up to two quotes of the content may come right before the closing three.
        for _ in range(2):
            if j < len(text) and text[j] == quote:
                j += 1
        return min(j, len(text))
    j = i + 1
    while j < len(text) and text[j] not in (quote, "\n"):
        j += 2 if escapes and text[j] == "\\" else 1
    return min(j + 1, len(text))


def _scan(text: str) -> _Scan:
    """Find top-level statements and the first line nested too deep, in one pass."""
    out = _Scan([])
    line, depth, i, n = 1, 0, 0, len(text)
    start = True  # at the start of a top-level statement
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            start = start or depth == 0
            i += 1
        elif c in " \t\r":
            i += 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end == -1 else end
        elif start:
            start = False
            end = text.find("\n", i)
            end = n if end == -1 else end
            if c == "[":
                out.statements.append(_Statement(line, text[i:end], header=True))
                i = end
                continue
            j = i
            while j < end and text[j] != "=":
                j = _string_end(text, j) if text[j] in "\"'" else j + 1
            out.statements.append(_Statement(line, text[i:j], header=False))
            i = j + 1 if j < end else end
        elif c in "\"'":
            j = _string_end(text, i)
            line += text.count("\n", i, j)
            i = j
        else:
            if c in "[{":
                depth += 1
                if depth > MAX_DEPTH and out.too_deep is None:
                    out.too_deep = line
            elif c in "]}":
                depth = max(0, depth - 1)
            i += 1
    return out


def parse(text: str) -> dict[str, Any]:
    """tomllib's parse, refusing values nested over `MAX_DEPTH` deep before it recurses."""
    too_deep = _scan(text).too_deep
    if too_deep is not None:
        raise TomlTextError(f"values nested more than {MAX_DEPTH} levels deep", too_deep)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TomlTextError(f"not valid TOML: {exc}") from None
    except RecursionError:  # a backstop: the scan above should have refused it
        raise TomlTextError(f"values nested more than {MAX_DEPTH} levels deep") from None


def _path(text: str) -> tuple[list[str], bool] | None:
    """The key parts of a header line or key text (decoded by tomllib), and whether `[[`."""
    try:
        node: Any = tomllib.loads(text if text.lstrip().startswith("[") else f"{text}= 0")
    except tomllib.TOMLDecodeError:
        return None
    parts: list[str] = []
    while isinstance(node, dict) and len(node) == 1:
        key, node = next(iter(node.items()))
        parts.append(key)
        if isinstance(node, list):
            return parts, True
    return parts, False


def _statement_paths(text: str) -> Iterator[tuple[str, int]]:
    """(key path, line) for every header and key, arrays of tables numbered from 0."""
    counts: dict[str, int] = {}
    table = ""
    for st in _scan(text).statements:
        decoded = _path(st.text)
        if decoded is None:
            continue
        parts, is_array = decoded
        path = table if not st.header else ""
        for k, part in enumerate(parts):
            path = f"{path}.{part}" if path else part
            last = k == len(parts) - 1
            if st.header and last and is_array:
                if path not in counts:
                    yield path, st.line
                counts[path] = counts.get(path, -1) + 1
            if path in counts and (st.header or not last):
                path = f"{path}[{counts[path]}]"
        if st.header:
            table = path
        yield path, st.line


def key_lines(text: str) -> dict[str, int]:
    """Key path -> line of the header or `key =` that sets it (first one wins)."""
    out: dict[str, int] = {}
    for path, line in _statement_paths(text):
        out.setdefault(path, line)
    return out


def line_of(lines: Mapping[str, int], key: str) -> int | None:
    """The line of `key`, or of the nearest enclosing key that has one (inline values)."""
    while key:
        if key in lines:
            return lines[key]
        cut = max(key.rfind("."), key.rfind("["))
        if cut <= 0:
            return None
        key = key[:cut]
    return None
