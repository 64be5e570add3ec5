"""Run netwatch as user `nobody`: a world-readable copy of it and of what it imports.

The checkout and the interpreter may live where `nobody` cannot read (a venv under /root,
mode 700), which would make every unprivileged test skip on exactly the machines CI uses. So
`readable_copy` runs a probe as root that imports (or runs) what the command needs, copies
netwatch and every installed top-level package the probe loaded to a temporary folder anyone
can read, and `python_for_nobody` finds an interpreter of the same minor version that nobody
may run (this one, or the system's), since the copied extensions are compiled for it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--inh-caps=-all"]

# Runs `probe` (code) and lists the installed (non-stdlib) top-level modules it imported.
_LIST_DEPS = r"""
import contextlib, importlib.metadata as md, io, json, site, sys
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    exec(sys.argv[1])
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

SNAPSHOT_PROBE = (
    "from netwatch.cli import main\n"
    "try:\n    main(['snapshot', '--format', 'jsonl'])\nexcept SystemExit:\n    pass\n"
)
"""What `netwatch snapshot` imports, found by running it."""

DASHBOARD_PROBE = (
    SNAPSHOT_PROBE + "import asyncio\n"
    "from netwatch.cli import watch\n"
    "from netwatch.ui.app import NetwatchApp\n"
    "from netwatch.feed import ReplayFeed\n"
    "async def _run():\n"
    "    app = NetwatchApp(ReplayFeed([]))\n"
    "    async with app.run_test() as pilot:\n"
    "        await pilot.pause()\n"
    "asyncio.run(_run())\n"
)
"""What the dashboard imports: the live pipeline, then the app driven headless once."""


def _installed_deps(repo_root: Path, probe: str) -> list[Path]:
    res = subprocess.run(
        [sys.executable, "-c", _LIST_DEPS, probe],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=repo_root,
        check=True,
    )
    return [Path(p) for p in json.loads(res.stdout.splitlines()[-1])]


@contextlib.contextmanager
def readable_copy(repo_root: Path, probe: str = SNAPSHOT_PROBE) -> Iterator[Path]:
    """netwatch and the installed packages `probe` imports, in a folder anyone can read."""
    base = Path(tempfile.mkdtemp(prefix="netwatch-nobody-"))
    try:
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(repo_root / "netwatch", base / "netwatch", ignore=ignore)
        for dep in _installed_deps(repo_root, probe):
            if dep.is_dir():
                shutil.copytree(dep, base / dep.name, ignore=ignore, dirs_exist_ok=True)
            else:
                shutil.copy(dep, base / dep.name)
        for path in [base, *base.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        for so in base.rglob("*.so"):
            so.chmod(0o755)
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def as_nobody(argv: list[str], copy: Path, python: str) -> list[str]:
    """`argv` run by `python` as nobody, importing from `copy`."""
    return [*NOBODY, "env", f"PYTHONPATH={copy}", "HOME=/tmp", python, *argv]


def python_for_nobody(copy: Path, check_imports: str = "netwatch.cli, psutil") -> str:
    """This interpreter if nobody may run it, else the system one of the same version.

    The copied psutil is a compiled extension, so only the same minor version will do.
    Skips the test (with every reason) when neither works.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    errors = []
    for python in (os.path.realpath(sys.executable), f"/usr/bin/python{version}"):
        check = f"import sys, {check_imports}; assert sys.version.startswith('{version}.')"
        res = subprocess.run(
            as_nobody(["-c", check], copy, python),
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
