"""docs/architecture.md stays true, and nothing in the project points outside it.

The architecture doc is the project's own account of its modules and import layers; these
tests fail when a module is added, renamed or removed without the doc's module map following,
and when the doc's layers differ from the import-linter contract in pyproject.toml. The
project must also stand alone: a tracked file that cites a document the project does not hold
(the team's early notes lived beside the repository, not in it) fails, naming file and line.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs/architecture.md"

# Written so that this file does not match itself.
_OUTSIDE = [
    (re.compile(r"\.\./" + "shared"), "a path outside the repository"),
    (re.compile(r"\bshared/(docs|corpus)"), "the team's shared folder"),
    (re.compile(r"\bgeoip" + r"\.md\b"), "a GeoIP note the project does not hold"),
    (re.compile(r"vpn" + r"-detection"), "a detection note the project does not hold"),
    (re.compile(r"(?<!docs/)\barchitecture" + r"\.md\b"), "an architecture doc other than docs/"),
    (re.compile(r"(?i)detection " + r"spec\b"), "detection notes kept outside the project"),
    (re.compile(r"(?i)\bspec(?:'s)? " + "\u00a7"), "a section of notes kept outside the project"),
]
_SKIP_DIRS = {".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}


def _tracked_files() -> list[Path]:
    """The files git tracks here; in a copy without git, every file but caches and the venv."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=30
        ).stdout
        names = [n for n in out.decode().split("\0") if n]
    except (OSError, subprocess.SubprocessError):
        names = []
    if names:
        return [REPO / n for n in names if (REPO / n).is_file()]
    return [
        p
        for p in REPO.rglob("*")
        if p.is_file() and not _SKIP_DIRS.intersection(p.relative_to(REPO).parts)
    ]


def _text(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data:
        return None  # binary (captures, the bundled mmdb)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def test_no_tracked_file_refers_to_documents_outside_the_project() -> None:
    files = _tracked_files()
    assert DOC in files or not (REPO / ".git").exists(), "docs/architecture.md is not tracked"
    found = []
    for path in files:
        text = _text(path)
        if text is None:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            for pattern, what in _OUTSIDE:
                if pattern.search(line):
                    found.append(f"{path.relative_to(REPO)}:{number}: {what}: {line.strip()}")
    assert not found, "\n".join(found)


def test_the_doc_lists_every_module_and_no_other() -> None:
    doc = DOC.read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(netwatch/[\w/]+\.py)` \|", doc, re.MULTILINE))
    named = set(re.findall(r"`(netwatch/[\w/]+\.py)`", doc))
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "netwatch").rglob("*.py")}
    assert not modules - rows, f"no row in the module map: {sorted(modules - rows)}"
    assert not named - modules, f"named in docs/architecture.md, gone: {sorted(named - modules)}"


def test_the_doc_shows_the_import_layers_of_the_contract() -> None:
    contracts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in contracts["contracts"] if c["type"] == "layers"]
    assert "```\n" + "\n".join(layers) + "\n```" in DOC.read_text(encoding="utf-8")
