"""Without root: `snapshot` run as `nobody` lists what it can, says what is missing, no traceback.

A root-owned listener (this test) must appear with `process: null`; a listener owned by
`nobody` must be attributed to its process; stderr is one line naming sudo and setcap.
The checkout may not be readable by `nobody` (e.g. under /root), so netwatch and psutil are
copied to a world-readable temporary folder first.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import requires_root, requires_tools

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all"]
HOLD = (
    "import socket,sys; s=socket.socket(); s.bind(('127.0.0.1',0)); s.listen(); "
    "print(s.getsockname()[1], flush=True); sys.stdin.read()"
)


# Runs `snapshot` as root once and lists the installed (non-stdlib) modules it imported, so
# the copy holds whatever the command needs as other stages get wired into it.
LIST_DEPS = r"""
import contextlib, importlib.metadata as md, io, json, site, sys
from netwatch.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    main(["snapshot", "--format", "jsonl"])
roots = tuple(site.getsitepackages() + [site.getusersitepackages()])
paths = set()
for name, mod in list(sys.modules.items()):
    path = getattr(mod, "__file__", None) or ""
    if "." in name or not path.startswith(roots):
        continue
    paths.add(path.rsplit("/", 1)[0] if path.endswith("__init__.py") else path)
    for dist in md.packages_distributions().get(name, []):  # metadata, for version lookups
        paths.add(str(getattr(md.distribution(dist), "_path", "")))
paths.discard("")
print(json.dumps(sorted(paths)))
"""


def _installed_deps(repo_root: Path) -> list[Path]:
    res = subprocess.run(
        [sys.executable, "-c", LIST_DEPS],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=repo_root,
        check=True,
    )
    return [Path(p) for p in json.loads(res.stdout.splitlines()[-1])]


@pytest.fixture
def readable_copy(repo_root: Path) -> Iterator[Path]:
    """netwatch and the installed packages `snapshot` imports, in a folder anyone can read."""
    base = Path(tempfile.mkdtemp(prefix="netwatch-nobody-"))
    try:
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(repo_root / "netwatch", base / "netwatch", ignore=ignore)
        for dep in _installed_deps(repo_root):
            if dep.is_dir():
                shutil.copytree(dep, base / dep.name, ignore=ignore)
            else:
                shutil.copy(dep, base / dep.name)
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        for so in base.rglob("*.so"):
            so.chmod(0o755)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _as_nobody(argv: list[str], copy: Path, python: str) -> list[str]:
    return [*NOBODY, "env", f"PYTHONPATH={copy}", "HOME=/tmp", python, *argv]


def _python_for_nobody(copy: Path) -> str:
    """This interpreter if nobody may run it, else the system one of the same version.

    The copied psutil is a compiled extension, so only the same minor version will do.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    errors = []
    for python in (os.path.realpath(sys.executable), f"/usr/bin/python{version}"):
        check = f"import sys, netwatch.cli, psutil; assert sys.version.startswith('{version}.')"
        res = subprocess.run(
            _as_nobody(["-c", check], copy, python),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=copy,
            check=False,
        )
        if res.returncode == 0:
            return python
        errors.append(f"{python}: {res.stderr.strip()[-120:]}")
    pytest.skip(f"nobody cannot run a Python {version} here: {'; '.join(errors)}")


@pytest.mark.live
@requires_root
@requires_tools("setpriv")
@pytest.mark.timeout(120)
def test_snapshot_as_nobody(readable_copy: Path) -> None:
    python = _python_for_nobody(readable_copy)
    holder = subprocess.Popen(
        _as_nobody(["-c", HOLD], readable_copy, python),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=readable_copy,
    )
    root_listener = socket.socket()
    try:
        root_listener.bind(("127.0.0.1", 0))
        root_listener.listen()
        root_port = root_listener.getsockname()[1]
        assert holder.stdout is not None
        nobody_port = int(holder.stdout.readline())
        res = subprocess.run(
            _as_nobody(["-m", "netwatch", "snapshot", "--format", "jsonl"], readable_copy, python),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=readable_copy,
            check=False,
        )
        table = subprocess.run(
            _as_nobody(["-m", "netwatch", "snapshot"], readable_copy, python),
            capture_output=True,
            text=True,
            timeout=60,
            cwd=readable_copy,
            check=False,
        )
    finally:
        root_listener.close()
        if holder.stdin is not None:
            holder.stdin.close()
        holder.wait(10)
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("netwatch: ")
    assert "sudo" in lines[0] and "setcap" in lines[0] and "cap_sys_ptrace" in lines[0]
    records = [json.loads(line) for line in res.stdout.splitlines()]
    (root_rec,) = [r for r in records if r["transport"] == "tcp" and r["sport"] == root_port]
    assert root_rec["direction"] == "listen" and root_rec["process"] is None
    (own,) = [r for r in records if r["transport"] == "tcp" and r["sport"] == nobody_port]
    assert own["process"] is not None and own["process"]["user"] == "nobody"
    assert own["process"]["pid"] == holder.pid  # setpriv and env exec, keeping the pid
    assert table.returncode == 0 and "Traceback" not in table.stderr
    assert len(table.stderr.strip().splitlines()) == 1
    assert any(str(root_port) in row and row.startswith("?") for row in table.stdout.splitlines())
