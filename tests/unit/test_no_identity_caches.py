"""No cache in netwatch/ is keyed on object identity (issue 12; docs/architecture.md section 4).

Change is a value: a flow's serial and revisions (`EnrichedFlow.version`), a socket entry's
stamp. A cache keyed on `id()` is only right while its objects are kept alive by hand (a freed
id is reused by the next object), which already broke once; so the builtin `id` may not be
called, passed (`map(id, ...)`) or otherwise named anywhere in the package. Nothing is
allowed: a real need would be a reason to change this test, with the reason written here.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "netwatch"


def _uses_of_id(tree: ast.AST) -> list[int]:
    """Lines that read the builtin `id` (a call, an argument, an alias).

    The one exception is a function's own parameter named `id` (Textual's widgets take
    `id=`, the widget's name): inside such a function the name is that string, not the
    builtin.
    """
    shadowed: set[ast.AST] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            if any(x.arg == "id" for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)):
                shadowed.update(ast.walk(node))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Name)
        and node.id == "id"
        and isinstance(node.ctx, ast.Load)
        and node not in shadowed
    ]


def test_no_module_reads_the_builtin_id() -> None:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        found += [f"{path.relative_to(PACKAGE.parent)}:{line}" for line in _uses_of_id(tree)]
    assert found == []


def test_the_identity_module_is_gone() -> None:
    assert not (PACKAGE / "model" / "identity.py").exists()


def test_the_check_finds_an_identity_keyed_cache() -> None:
    """The check itself: the patterns the old caches used are found."""
    for text in (
        "cache = dict(zip(map(id, items), answers))",
        "hit = memo.get(id(flow))",
        "seen.add(id(s))",
        "getter = id",
    ):
        assert _uses_of_id(ast.parse(text)) == [1], text
    assert _uses_of_id(ast.parse("def f(*, id=None):\n    return g(id=id)")) == []
